"""Crystal <-> text in the CrystalLLM format (docs/METHOD.md §2).

The text of a crystal with ``n`` atoms has ``2 + 2n`` lines::

    4.1 4.1 18.4        lengths a b c in Å, one decimal each
    90 90 120           angles alpha beta gamma in degrees, integers
    Ga                  element symbol of atom 1
    0.33 0.67 0.18      fractional coordinates of atom 1, two decimals each
    ...                 (one symbol line and one coordinate line per atom)

Rounding choices (all to nearest, ties to even, never truncation):

* Angles are *rounded* to integers. The reference code truncates with ``int()``, which turns
  the 119.99999° that CIF files carry for hexagonal cells into 119 and a 59.99° angle into 59,
  outside the interval (59.9°, 120.1°) of the angle bijection. Rounding keeps every angle
  within 0.5° of the truth and every angle of a Niggli-reduced cell within [60, 120].
* A coordinate in [0.995, 1) would round to ``1.00``, which is the same point of the torus as
  ``0.00``. :func:`encode` writes ``0.00`` so that every point has a single spelling and a
  model never sees ``1.00``; :func:`decode` still accepts ``1.00`` (and wraps it to 0).

:func:`decode` is total: on any string it returns a physically sensible :class:`Crystal` or
raises :class:`ParseError` with a ``reason`` from :data:`PARSE_ERROR_REASONS`. "Physically
sensible" means: at least one and at most ``max_atoms`` atoms of known elements, lengths in
(0, :data:`MAX_LENGTH`] Å, angles in the open ``angle_range`` (default: the bijection interval
(59.9°, 120.1°)), coordinates in [0, 1], every number finite, cell volume above
:data:`MIN_VOLUME`. Atom overlaps are not checked here; that is structural validity, an
evaluation metric.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Literal, get_args

import numpy as np

from flowllm_kit.crystal import Crystal
from flowllm_kit.geometry.lattice import ANGLE_HIGH, ANGLE_LOW

__all__ = [
    "DEFAULT_MAX_ATOMS",
    "MAX_LENGTH",
    "MIN_VOLUME",
    "PARSE_ERROR_REASONS",
    "ParseError",
    "ParseErrorReason",
    "decode",
    "element_symbols",
    "encode",
]

ParseErrorReason = Literal[
    "empty",  # no non-blank line
    "too_few_lines",  # fewer than 3 non-blank lines: no atom at all
    "too_many_atoms",  # more than max_atoms atoms
    "wrong_number_of_values",  # a lattice/coordinate line without 3 values, or a symbol line not 1
    "bad_number",  # not a plain decimal number (e.g. "1e5", "nan", "1,5"), or not finite
    "unknown_element",  # a symbol line that is not one of the 118 element symbols
    "dangling_element_line",  # the last line is a symbol with no coordinate line after it
    "non_positive_length",  # a lattice length <= 0
    "length_too_large",  # a lattice length > MAX_LENGTH
    "angle_out_of_range",  # an angle outside the open angle_range
    "coordinate_out_of_range",  # a fractional coordinate outside [0, 1]
    "degenerate_cell",  # the angles span no cell, or the volume is <= MIN_VOLUME
]
PARSE_ERROR_REASONS: tuple[ParseErrorReason, ...] = get_args(ParseErrorReason)
"""Every reason a :class:`ParseError` can carry (each explained in ``ParseErrorReason``)."""

DEFAULT_MAX_ATOMS = 64
"""Default atom limit of :func:`decode` (MP-20: 20, carbon-24: 24, MPTS-52: 52 atoms)."""
MAX_LENGTH = 1000.0
"""Largest lattice length (Å) :func:`decode` accepts; beyond it the text is nonsense."""
MIN_VOLUME = 0.1
"""Smallest cell volume (Å^3) :func:`decode` accepts, the structural-validity floor."""

# A plain decimal number: no exponent, no "nan"/"inf", ASCII digits only (float() would
# accept "1e5", "nan", "1_0" and Arabic-Indic digits).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class ParseError(ValueError):
    """A text that is not a valid crystal.

    Attributes:
        reason: Why, one of :data:`PARSE_ERROR_REASONS`.
        line: 1-based line number in the text where the problem is, or ``None``.
    """

    def __init__(self, reason: ParseErrorReason, detail: str, *, line: int | None = None) -> None:
        where = f" (line {line})" if line is not None else ""
        super().__init__(f"{reason}: {detail}{where}")
        self.reason: ParseErrorReason = reason
        self.detail = detail
        self.line = line

    def __reduce__(self) -> tuple:
        # Keep the exception picklable (multiprocessing) despite the keyword-only argument.
        return (_rebuild_parse_error, (self.reason, self.detail, self.line))


def _rebuild_parse_error(reason: ParseErrorReason, detail: str, line: int | None) -> ParseError:
    return ParseError(reason, detail, line=line)


@functools.cache
def element_symbols() -> tuple[str, ...]:
    """The 118 element symbols; ``element_symbols()[z - 1]`` is the symbol of element ``z``."""
    from pymatgen.core import Element

    return tuple(Element.from_Z(z).symbol for z in range(1, 119))


@functools.cache
def _atomic_number_of() -> dict[str, int]:
    return {symbol: z for z, symbol in enumerate(element_symbols(), start=1)}


def encode(
    crystal: Crystal,
    *,
    translate: bool = False,
    permute: bool = False,
    rng: np.random.Generator | int | None = None,
) -> str:
    """Write a crystal as CrystalLLM text (no trailing newline).

    Args:
        crystal: The crystal.
        translate: Shift all fractional coordinates by one uniform random vector (wrapped
            into [0, 1)), the reference's training augmentation.
        permute: Write the atoms in a random order (an augmentation the reference lacks).
        rng: Random generator or seed for the augmentations; ``None`` draws fresh entropy.

    Returns:
        The text, ``2 + 2 * crystal.num_atoms`` lines.
    """
    generator = np.random.default_rng(rng)
    coords = np.asarray(crystal.frac_coords, dtype=np.float64)  # (n, 3)
    numbers = np.asarray(crystal.atomic_numbers)  # (n,)
    if translate:
        coords = np.mod(coords + generator.uniform(size=3), 1.0)
    if permute:
        order = generator.permutation(len(numbers))
        coords, numbers = coords[order], numbers[order]
    symbols = element_symbols()
    # Hundredths modulo 100: values that round to 1.00 are written as 0.00 (same torus point).
    hundredths = np.rint(coords * 100.0).astype(np.int64) % 100  # (n, 3)
    lines = [
        " ".join(f"{length:.1f}" for length in crystal.lengths),
        " ".join(str(int(np.rint(angle))) for angle in crystal.angles),
    ]
    for z, row in zip(numbers, hundredths, strict=True):
        lines.append(symbols[int(z) - 1])
        lines.append(" ".join(f"0.{value:02d}" for value in row))
    return "\n".join(lines)


def _numbers(line: str, number: int) -> list[float]:
    """Three values of a lattice or coordinate line, validated."""
    fields = line.split()
    if len(fields) != 3:
        raise ParseError(
            "wrong_number_of_values", f"expected 3 values, got {len(fields)}", line=number
        )
    values = []
    for field in fields:
        if not _NUMBER.fullmatch(field):
            raise ParseError("bad_number", f"{field[:20]!r} is not a decimal number", line=number)
        value = float(field)
        if not math.isfinite(value):
            raise ParseError("bad_number", f"{field[:20]!r} overflows", line=number)
        values.append(value)
    return values


def _check_cell(
    lengths: list[float], angles: list[float], angle_range: tuple[float, float], lines: list[int]
) -> None:
    """Lengths, angles and volume; ``lines`` are the line numbers of lengths and angles."""
    for length in lengths:
        if length <= 0.0:
            raise ParseError("non_positive_length", f"length {length} Å", line=lines[0])
        if length > MAX_LENGTH:
            detail = f"length {length} Å > {MAX_LENGTH} Å"
            raise ParseError("length_too_large", detail, line=lines[0])
    low, high = angle_range
    for angle in angles:
        if not low < angle < high:
            detail = f"angle {angle}° not in ({low}, {high})"
            raise ParseError("angle_out_of_range", detail, line=lines[1])
    cosines = [math.cos(math.radians(angle)) for angle in angles]
    # Volume of a cell with unit lengths: sqrt of the Gram determinant of the cosines.
    gram = 1.0 - sum(c * c for c in cosines) + 2.0 * cosines[0] * cosines[1] * cosines[2]
    volume = math.prod(lengths) * math.sqrt(gram) if gram > 0.0 else 0.0
    if not volume > MIN_VOLUME:
        detail = f"volume {volume:.3g} Å^3 <= {MIN_VOLUME} Å^3"
        raise ParseError("degenerate_cell", detail, line=lines[1])


def decode(
    text: str,
    *,
    max_atoms: int | None = DEFAULT_MAX_ATOMS,
    angle_range: tuple[float, float] = (ANGLE_LOW, ANGLE_HIGH),
) -> Crystal:
    """Read a crystal from CrystalLLM text; the inverse of :func:`encode` up to rounding.

    Blank lines and surrounding whitespace are ignored; values on a line may be separated by
    any whitespace. Coordinates of exactly 1 are wrapped to 0.

    Args:
        text: The text, without prompt and end-of-sequence token.
        max_atoms: Reject texts with more atoms (``None``: no limit).
        angle_range: Open interval (degrees) of accepted angles. The default is the angle
            bijection's interval, which holds every rounded angle of a Niggli-reduced cell;
            widen it, e.g. to ``(0, 180)``, for cells that are not reduced.

    Returns:
        The crystal (no id, no properties).

    Raises:
        ParseError: If the text is not a valid, physically sensible crystal; ``reason`` says
            why. No other exception is raised for any string.
        TypeError: If ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"decode expects a str, got {type(text).__name__}")
    lines = [
        (number, stripped)
        for number, line in enumerate(text.split("\n"), start=1)
        if (stripped := line.strip())
    ]
    if not lines:
        raise ParseError("empty", "no non-blank line")
    if len(lines) < 3:
        raise ParseError("too_few_lines", f"{len(lines)} lines; need lengths, angles and atoms")
    num_atoms = (len(lines) - 1) // 2  # a dangling last symbol line counts as an atom
    if max_atoms is not None and num_atoms > max_atoms:
        raise ParseError("too_many_atoms", f"{num_atoms} atoms > max_atoms={max_atoms}")

    lengths = _numbers(lines[0][1], lines[0][0])
    angles = _numbers(lines[1][1], lines[1][0])
    _check_cell(lengths, angles, angle_range, [lines[0][0], lines[1][0]])

    atomic_number_of = _atomic_number_of()
    atomic_numbers: list[int] = []
    coords: list[list[float]] = []
    for index in range(2, len(lines), 2):
        number, line = lines[index]
        fields = line.split()
        if len(fields) != 1:
            raise ParseError(
                "wrong_number_of_values",
                f"expected 1 element symbol, got {len(fields)}",
                line=number,
            )
        if fields[0] not in atomic_number_of:
            raise ParseError("unknown_element", f"{fields[0][:20]!r}", line=number)
        if index + 1 == len(lines):
            raise ParseError(
                "dangling_element_line", f"no coordinates for {fields[0]}", line=number
            )
        coord_number, coord_line = lines[index + 1]
        values = _numbers(coord_line, coord_number)
        if not all(0.0 <= value <= 1.0 for value in values):
            raise ParseError(
                "coordinate_out_of_range", f"{values} not in [0, 1]", line=coord_number
            )
        atomic_numbers.append(atomic_number_of[fields[0]])
        coords.append(values)
    return Crystal(
        atomic_numbers=atomic_numbers, frac_coords=coords, lengths=lengths, angles=angles
    )
