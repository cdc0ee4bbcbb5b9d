"""Result strips: one row per query, its middle frame first, then the top-k gallery tracklets' middle frames.

Drawn with Pillow (already a dependency), so ``reidzoo search --thumbnails`` needs no plotting extra. A thumbnail
whose frame is gone (the gallery folders moved since the index was built) is drawn as a grey cell saying so rather
than failing the whole search.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from PIL import Image, ImageDraw, ImageFont

from .._atomic import atomic_write

__all__ = ['render_result_strips']

_QUERY_COLOUR = (30, 110, 220)
_SAME_PID = (40, 170, 60)
_OTHER_PID = (210, 50, 40)
_NEUTRAL = (160, 160, 160)


def _cell(frame: Optional[str], height: int, width: int, border: tuple[int, int, int]) -> Image.Image:
    cell = Image.new('RGB', (width, height), (235, 235, 235))
    img = None
    if frame:
        try:
            with Image.open(frame) as im:
                img = im.convert('RGB')
        except OSError:
            warnings.warn(f'thumbnail frame {frame} cannot be read; drawing a blank cell', stacklevel=3)
    if img is not None:
        img.thumbnail((width - 6, height - 6))
        cell.paste(img, ((width - img.width) // 2, (height - img.height) // 2))
    else:
        ImageDraw.Draw(cell).text((6, height // 2 - 6), 'no frame', fill=(90, 90, 90))
    ImageDraw.Draw(cell).rectangle([0, 0, width - 1, height - 1], outline=border, width=3)
    return cell


def _label(row: Optional[dict[str, Any]], distance: Optional[float], rank: Optional[int]) -> list[str]:
    if row is None:
        return ['(none)']
    name = os.path.basename(str(row.get('name') or row.get('path') or '').rstrip('/')) or '?'
    lines = [f'#{rank}  {distance:.3f}' if rank is not None else 'query', name[:14]]
    ids = []
    if row.get('camid', -1) is not None and int(row.get('camid', -1)) >= 0:
        ids.append(f'c{row["camid"]}')
    if row.get('pid', -1) is not None and int(row.get('pid', -1)) >= 0:
        ids.append(f'p{row["pid"]}')
    if ids:
        lines.append(' '.join(ids))
    return lines


def render_result_strips(
        queries: Sequence[dict[str, Any]],
        results: Sequence[Sequence[Optional[dict[str, Any]]]],
        distances: Sequence[Sequence[float]],
        out: Union[str, os.PathLike],
        *,
        cell_size: tuple[int, int] = (128, 64),
) -> Path:
    """Write a PNG with one strip per query: the query's thumbnail, then its ranked results with distance, name,
    camera and pid. Results whose pid equals a known query pid get a green border, other known pids red.

    Args:
        queries: metadata rows of the queries (``thumbnail``, ``name``, optional ``pid``/``camid``).
        results: per query, the gallery metadata rows, nearest first (``None`` for a missing result).
        distances: per query, the matching distances.
        out: the PNG path (written atomically).
        cell_size: ``(height, width)`` of one thumbnail.
    """
    if len(queries) != len(results) or len(results) != len(distances):
        raise ValueError(f'got {len(queries)} queries, {len(results)} result lists and {len(distances)} distance '
                         f'lists; expected one each per query')
    h, w = cell_size
    font = ImageFont.load_default()
    line_h = 12
    text_h = 3 * line_h + 4
    cols = 1 + max((len(r) for r in results), default=0)
    gap = 8  # between the query and its results
    sheet = Image.new('RGB', (cols * w + gap, max(1, len(queries)) * (h + text_h)), 'white')
    draw = ImageDraw.Draw(sheet)
    for qi, (query, rows, dists) in enumerate(zip(queries, results, distances)):
        y = qi * (h + text_h)
        q_pid = int(query.get('pid', -1) if query.get('pid') is not None else -1)
        cells = [(query, None, None, _QUERY_COLOUR)]
        for rank, (row, dist) in enumerate(zip(rows, dists), 1):
            pid = int(row.get('pid', -1)) if row is not None and row.get('pid') is not None else -1
            colour = _NEUTRAL if q_pid < 0 or pid < 0 else _SAME_PID if pid == q_pid else _OTHER_PID
            cells.append((row, float(dist), rank, colour))
        for ci, (row, dist, rank, colour) in enumerate(cells):
            x = ci * w + (gap if ci else 0)
            sheet.paste(_cell(row.get('thumbnail') if row else None, h, w, colour), (x, y))
            for li, text in enumerate(_label(row, dist, rank)):
                draw.text((x + 3, y + h + 2 + li * line_h), text, fill=(0, 0, 0), font=font)
    return atomic_write(Path(out), lambda p: sheet.save(p, format='PNG'))
