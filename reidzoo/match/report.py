"""What a person looks at after ``reidzoo match``: a contact sheet PNG and a self-contained ``index.html``.

Both have one row per global identity and one thumbnail per camera appearance (a tracklet), labelled with the
camera, the tracker's id and the frame span, so a wrong merge or a missed one is seen at a glance.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ['contact_sheet', 'render_html']

THUMB = (96, 48)  # (H, W)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has a single bitmap size
        return ImageFont.load_default()


def _thumb(path: str, size: tuple[int, int] = THUMB) -> Image.Image:
    with Image.open(path) as img:
        return img.convert('RGB').resize((size[1], size[0]), Image.BILINEAR)


def contact_sheet(identities: Sequence[dict[str, Any]], max_per_row: int = 12,
                  thumb: tuple[int, int] = THUMB) -> Image.Image:
    """One row per identity: its label, then one thumbnail per appearance with ``cam/track`` under it.

    Args:
        identities: ``[{'id': int, 'appearances': [{'camera', 'track_id', 'thumbnail', ...}, ...]}, ...]``.
        max_per_row: appearances shown per identity (the rest are counted in the label).
        thumb: thumbnail ``(H, W)``.
    """
    th, tw = thumb
    label_w, pad, caption = 74, 4, 14
    cols = max([1, *(min(len(i['appearances']), max_per_row) for i in identities)])
    row_h = th + caption + pad
    sheet = Image.new('RGB', (label_w + cols * (tw + pad) + pad, max(1, len(identities)) * row_h + pad), 'white')
    draw = ImageDraw.Draw(sheet)
    big, small = _font(14), _font(10)
    for r, ident in enumerate(identities):
        y = pad + r * row_h
        apps = ident['appearances']
        draw.text((pad, y + th // 2 - 14), f"ID {ident['id']}", fill='black', font=big)
        cams = len({a['camera'] for a in apps})
        extra = f' +{len(apps) - max_per_row}' if len(apps) > max_per_row else ''
        draw.text((pad, y + th // 2 + 4), f'{cams} cam{"s" if cams != 1 else ""}{extra}', fill='#555', font=small)
        for c, app in enumerate(apps[:max_per_row]):
            x = label_w + c * (tw + pad)
            sheet.paste(_thumb(app['thumbnail'], thumb), (x, y))
            draw.text((x, y + th + 1), f"{app['camera'][:6]}/{app['track_id']}", fill='black', font=small)
        if r:
            draw.line([(0, y - pad // 2), (sheet.width, y - pad // 2)], fill='#ddd')
    return sheet


def _data_uri(path: str) -> str:
    buf = io.BytesIO()
    _thumb(path).save(buf, format='JPEG', quality=85)
    return 'data:image/jpeg;base64,' + base64.b64encode(buf.getvalue()).decode()


def render_html(identities: Sequence[dict[str, Any]], summary: dict[str, Any], sheet_name: str = 'contact_sheet.png') \
        -> str:
    """A self-contained page (thumbnails inlined): a summary, then one table row per identity."""
    esc = html.escape
    rows = []
    for ident in identities:
        cells = ''.join(
            f'<figure><img src="{_data_uri(a["thumbnail"])}" alt="{esc(a["camera"])} track {a["track_id"]}">'
            f'<figcaption>{esc(a["camera"])} · track {a["track_id"]}<br>frames {a["first_frame"]}–{a["last_frame"]}'
            '</figcaption></figure>' for a in ident['appearances'])
        cams = sorted({a['camera'] for a in ident['appearances']})
        rows.append(f'<tr class="identity" id="id-{ident["id"]}"><th>{ident["id"]}</th><td>{len(cams)}</td>'
                    f'<td class="apps">{cells}</td></tr>')
    facts = ''.join(f'<li><b>{esc(str(k))}</b>: {esc(str(v))}</li>' for k, v in summary.items())
    return f'''<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>reidzoo match: {len(identities)} identities</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: middle; }}
figure {{ display: inline-block; margin: 2px 4px; text-align: center; font-size: 11px; }}
figure img {{ display: block; width: {THUMB[1]}px; height: {THUMB[0]}px; }}
</style></head>
<body>
<h1>reidzoo match: {len(identities)} identities</h1>
<ul>{facts}</ul>
<p>Contact sheet: <a href="{esc(sheet_name)}">{esc(sheet_name)}</a>; per-camera tracks with global ids and
<code>identities.json</code> are beside this page.</p>
<table><thead><tr><th>identity</th><th>cameras</th><th>appearances (camera · tracker id · frames)</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
'''


def write_report(out_dir: Path, identities: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Write ``contact_sheet.png`` and ``index.html`` into ``out_dir`` (a temporary folder made atomic by the
    caller)."""
    contact_sheet(identities).save(out_dir / 'contact_sheet.png', optimize=True)
    (out_dir / 'index.html').write_text(render_html(identities, summary), encoding='utf-8')
