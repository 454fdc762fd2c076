"""``trd prepare``: a copy of the training images at the size reduced steps need, with a manifest.

Each training image is written at :func:`~trdcli.core.prepared_size.prepared_size_px` (the smallest
size at which every crop a reduced step can draw keeps full detail), as a JPEG, its EXIF orientation
applied; an image with nothing to spare is linked (or copied), never enlarged. Every file is written
under a temporary name and renamed, and recorded in the manifest only then (a block of 64 files at a
time), so a run stopped at any point (Ctrl-C, a full disk) leaves a copy the next run continues
from, redoing at most the block it was in.

The manifest is SQLite (``trd-prepared.sqlite`` in the copy): one row per training file (its path in
the data folder, size, mtime and displayed dimensions, the copy's dimensions) and the settings the copy was made for
(sizes, crop range, quality, trd version). SQLite rather than JSON because an ImageNet copy is 1.28
million rows written as they finish: a JSON manifest would be rewritten whole to stay resumable.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from trdcli.core.errors import DataError
from trdcli.core.prepared_size import CROP_RATIO, prepared_size_px

MANIFEST_FILE = "trd-prepared.sqlite"
# An image whose copy would keep more than this share of its pixels is kept as it is: decoding costs
# about in proportion to pixels, so such a copy saves less than half a decode, while re-encoding
# loses detail and can grow the file (imagenette2-224's 224 px photos made 219 px copies at 155% of
# the originals' bytes at quality 90).
KEEP_ABOVE_PIXEL_FRAC = 0.5
# JPEG quality of the copies: benchmarks/loader_speed.py --prepared --quality Q on 300 ImageNet photos
# (docs/benchmarks.md): 75, 85, 90, 95 give the loader 0.27x, 0.30x, 0.31x, 0.35x of a full step, 11%,
# 14%, 17%, 24% of the bytes, PSNR median 36.6, 37.9, 38.7, 40.0 dB. 90 keeps the step well under 0.35x
# and the median near 39 dB (it was the default before the sweep, which confirmed it).
DEFAULT_QUALITY = 90


@dataclass(frozen=True)
class PrepareSettings:
    """What a copy is made for: a copy made for other settings is stale."""

    reduced_px: int  # the largest reduced size the runs will read from it
    min_scale: float  # the training crops' smallest area share
    quality: int = DEFAULT_QUALITY
    ratio_low: float = CROP_RATIO[0]
    ratio_high: float = CROP_RATIO[1]
    trd_version: str = ""


@dataclass(frozen=True)
class PreparedFile:
    """One training file and its copy, as the manifest keeps it."""

    rel_path: str  # in the data folder (and in the copy, which keeps the layout)
    source_bytes: int
    source_mtime_ns: int
    source_width: int  # as displayed (EXIF orientation applied): a crop box is drawn on these
    source_height: int
    width: int  # the copy's: the box, scaled by width / source_width, is the same crop in the copy
    height: int
    kept: bool  # linked or copied as it is: it had no pixels to spare


@dataclass(frozen=True)
class PrepareResult:
    out_dir: Path
    written: int  # made now
    already: int  # found fresh from an earlier run
    kept: int  # of all, stored at their own size
    source_bytes: int
    copy_bytes: int


def _absolute(path) -> Path:
    # Absolute, but links not followed: a folder of symlinks (a subset of a dataset) keeps its own paths.
    return Path(os.path.abspath(path))


def _rel(source, data: Path) -> str:
    return _absolute(source).relative_to(data).as_posix()


def default_out_dir(data: Path, reduced_px: int) -> Path:
    """Beside the data folder: ``<data>-trd-<px>px``."""
    data = _absolute(data)
    return data.parent / f"{data.name}-trd-{reduced_px}px"


def prepare_one(source: Path, target: Path, rel_path: str, settings: PrepareSettings) -> PreparedFile | str:
    """Write ``source``'s copy at ``target`` (atomically); its manifest row, or why it could not be read.

    The copy keeps the file's name whatever it holds (a resized PNG is stored as JPEG): images are
    opened by their content."""
    from PIL import Image, ImageOps

    stat = source.stat()
    try:
        with Image.open(source) as image:
            image = ImageOps.exif_transpose(image)
            width, height = image.size
            size = prepared_size_px(width, height, settings.reduced_px, settings.min_scale,
                                    (settings.ratio_low, settings.ratio_high))  # fmt: skip
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            try:
                kept = size[0] * size[1] > KEEP_ABOVE_PIXEL_FRAC * width * height
                if kept:
                    _link_or_copy(source, tmp)
                else:
                    rgb = image.convert("RGB") if image.mode != "RGB" else image
                    rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0).save(
                        tmp, "JPEG", quality=settings.quality
                    )
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, OSError) and exc.errno in (28, 13, 30):  # disk full, permission, read-only
            raise
        return f"{type(exc).__name__}: {exc}"
    copy_size = (width, height) if kept else size
    return PreparedFile(rel_path, stat.st_size, stat.st_mtime_ns, width, height, *copy_size, kept)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class Manifest:
    """The SQLite manifest of a copy: its settings and one row per finished file."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / MANIFEST_FILE
        self.db = sqlite3.connect(self.path)
        self.db.execute("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS files (rel_path TEXT PRIMARY KEY, source_bytes INTEGER, "
            "source_mtime_ns INTEGER, source_width INTEGER, source_height INTEGER, width INTEGER, height INTEGER, "
            "kept INTEGER)"
        )

    def settings(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM settings"))

    def start(self, settings: PrepareSettings, source: Path) -> None:
        """Record what the copy is for; a copy made for anything else is emptied first."""
        wanted = {k: str(v) for k, v in asdict(settings).items() if k != "trd_version"} | {"source": str(source)}
        have = self.settings()
        if have and {k: have.get(k) for k in wanted} != wanted:
            self.db.execute("DELETE FROM files")
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO settings VALUES (?, ?)",
                [*wanted.items(), ("trd_version", settings.trd_version)],
            )

    def rows(self) -> dict[str, PreparedFile]:
        return {r[0]: PreparedFile(*r[:7], bool(r[7])) for r in self.db.execute("SELECT * FROM files")}

    def add(self, files: Sequence[PreparedFile]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.rel_path,
                        f.source_bytes,
                        f.source_mtime_ns,
                        f.source_width,
                        f.source_height,
                        f.width,
                        f.height,
                        int(f.kept),
                    )
                    for f in files
                ],  # fmt: skip
            )

    def close(self) -> None:
        self.db.close()


def _is_fresh(row: PreparedFile | None, source: Path, target: Path) -> bool:
    if row is None or not target.is_file():
        return False
    stat = source.stat()
    return (row.source_bytes, row.source_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def _prepare_chunk(args: tuple[list[tuple[str, str, str]], PrepareSettings]) -> list[tuple[str, PreparedFile | str]]:
    jobs, settings = args
    return [(rel, prepare_one(Path(source), Path(target), rel, settings)) for rel, source, target in jobs]


def prepare_copy(
    data: Path,
    sources: Sequence[Path],
    out_dir: Path,
    settings: PrepareSettings,
    *,
    workers: int = 0,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> PrepareResult:
    """Write (or finish) the copy of ``sources`` (training files under ``data``) in ``out_dir``."""
    data, out_dir = _absolute(data), Path(out_dir)
    if not sources:
        raise DataError(f"no training images in {data} to prepare")
    made_dir = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(out_dir)
    except (OSError, sqlite3.Error) as exc:
        raise DataError(f"cannot write the copy in {out_dir}: {exc}") from None
    try:
        manifest.start(settings, data)
        rows = manifest.rows()
        jobs, already = [], 0
        for source in sources:
            rel = _rel(source, data)
            target = out_dir / rel
            if _is_fresh(rows.get(rel), Path(source), target):
                already += 1
            else:
                jobs.append((rel, str(source), str(target)))
        progress(already, len(sources))
        written, bad = 0, []
        for results in _run_chunks(jobs, settings, workers):
            made = [f for _, f in results if isinstance(f, PreparedFile)]
            bad += [(rel, f) for rel, f in results if isinstance(f, str)]
            manifest.add(made)
            written += len(made)
            progress(already + written + len(bad), len(sources))
        if bad:
            rel, reason = bad[0]
            kept = manifest.rows()
            if not kept and made_dir:  # nothing a rerun could continue from: leave nothing behind
                manifest.close()
                shutil.rmtree(out_dir, ignore_errors=True)
                left = "nothing was written"
            else:
                left = f"the {len(kept)} copies made are kept, and a rerun continues from them"
            raise DataError(f"{len(bad)} training image(s) could not be read, e.g. {rel} ({reason}); {left}")
        final = manifest.rows()
    except OSError as exc:
        raise DataError(f"the copy in {out_dir} stopped: {exc}; what was written stays valid, run again") from None
    finally:
        manifest.close()
    copy_bytes = sum((out_dir / rel).stat().st_size for rel in final)
    return PrepareResult(
        out_dir, written, already, sum(f.kept for f in final.values()),
        sum(f.source_bytes for f in final.values()), copy_bytes,
    )  # fmt: skip


def _run_chunks(jobs, settings: PrepareSettings, workers: int, chunk: int = 64) -> Iterator[list]:
    chunks = [(jobs[i : i + chunk], settings) for i in range(0, len(jobs), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        yield from map(_prepare_chunk, chunks)
        return
    from trdcli.data.pool import clean_pool

    with clean_pool(workers) as pool:
        yield from pool.map(_prepare_chunk, chunks)


def serves_reason(have: dict[str, str], need: PrepareSettings) -> str | None:
    """Why a copy made for the settings ``have`` (its manifest's) cannot serve a run that needs ``need``;
    None when it can: its images hold at least ``need``'s reduced size across every crop the run can
    draw, which a copy made for a larger size or a wider crop range does too. The JPEG quality is the
    copy's property, not a reason to refuse it."""
    try:
        made_px, made_scale = int(have["reduced_px"]), float(have["min_scale"])
        made_ratio = (float(have["ratio_low"]), float(have["ratio_high"]))
    except (KeyError, ValueError):
        return "its manifest does not say what it was made for"
    if made_px >= need.reduced_px and made_scale <= need.min_scale and made_ratio[0] <= need.ratio_low \
            and made_ratio[1] >= need.ratio_high:  # fmt: skip
        return None
    return (
        f"it was made for reduced steps up to {made_px} px and crops down to {made_scale:g} of the image "
        f"(aspect {made_ratio[0]:.3g}-{made_ratio[1]:.3g}); this run needs {need.reduced_px} px and "
        f"{need.min_scale:g} (aspect {need.ratio_low:.3g}-{need.ratio_high:.3g})"
    )


def stale_reason(data: Path, sources: Sequence[Path], out_dir: Path, settings: PrepareSettings) -> str | None:
    """Why the copy in ``out_dir`` cannot serve ``sources`` at ``settings``; None when it can: made from
    this folder for settings it serves (:func:`serves_reason`), every training file in it unchanged since."""
    data, out_dir = _absolute(data), Path(out_dir)
    if not (out_dir / MANIFEST_FILE).is_file():
        return f"no manifest in {out_dir}"
    try:
        manifest = Manifest(out_dir)
        try:
            have, rows = manifest.settings(), manifest.rows()
        finally:
            manifest.close()
    except sqlite3.Error as exc:
        return f"its manifest is unreadable ({exc})"
    if have.get("source") != str(data):
        return f"it was made from {have.get('source')}, not {data}"
    if (reason := serves_reason(have, settings)) is not None:
        return reason
    for source in sources:
        rel = _rel(source, data)
        if not _is_fresh(rows.get(rel), Path(source), out_dir / rel):
            return f"{rel} is missing from it or changed since"
    return None


def larger_copies_beside(data: Path, reduced_px: int) -> list[Path]:
    """``trd prepare``'s default folders beside ``data`` made for sizes above ``reduced_px``, smallest
    first: each holds every detail a run at ``reduced_px`` needs, for fewer bytes than a larger one."""
    data = _absolute(data)
    found = []
    for path in data.parent.glob(f"{data.name}-trd-*px"):
        size = path.name[len(data.name) + len("-trd-") : -len("px")]
        if size.isdigit() and int(size) > reduced_px and path.is_dir():
            found.append((int(size), path))
    return [path for _, path in sorted(found)]


def copies_for(data: Path, sources: Sequence[Path], out_dir: Path) -> list[tuple[str, int, int] | None]:
    """For each of ``sources``, what a reduced step reads from the copy in ``out_dir`` (its path and the
    original's displayed size), or None for an image kept at its own size (the original is the copy).
    Call it on a copy :func:`stale_reason` found fresh."""
    data, out_dir = _absolute(data), Path(out_dir)
    manifest = Manifest(out_dir)
    try:
        rows = manifest.rows()
    finally:
        manifest.close()
    out = []
    for source in sources:
        row = rows[_rel(source, data)]
        out.append(None if row.kept else (str(out_dir / row.rel_path), row.source_width, row.source_height))
    return out


def largest_reduced_px(schedule, train_images: int, batch_size: int, epochs: int, size_px: int) -> int | None:
    """The largest size below ``size_px`` at which a run with these options reads its images, planned as
    ``trd train`` plans it: what ``trd prepare`` makes a copy for and ``trd train`` looks for (None: no
    step is reduced)."""
    from trdcli.core.cost import RunShape, plan_groups

    return reduced_px_of(plan_groups(schedule, RunShape(train_images, batch_size, epochs, size_px)), size_px)


def reduced_px_of(groups, full_px: int) -> int | None:
    """The largest size below ``full_px`` among planned or counted step groups (None: no step is reduced)."""
    return max((g.px for g in groups if g.px < full_px), default=None)


@dataclass(frozen=True)
class CopyLookup:
    """What a run with given options would read for its reduced steps."""

    copies: list[tuple[str, int, int] | None] | None  # per training image (copies_for); None: the originals
    out_dir: Path | None  # the fresh copy's folder, when one is read
    looked_in: Path | None = None  # where a copy was looked for
    reason: str | None = None  # why the copy looked for is not read


def find_copy(
    data: Path, sources: Sequence[Path], reduced_px: int | None, min_scale: float, prepared: Path | None = None
) -> CopyLookup:
    """The fresh ``trd prepare`` copy a run whose largest reduced size is ``reduced_px``
    (:func:`largest_reduced_px`) reads for reduced steps: ``prepared``, or by default the one beside the
    data made for this size, else the smallest beside it made for a larger one. A copy that cannot serve
    the run (made for a smaller size or a narrower crop range, from another folder, or of files changed
    since: :func:`stale_reason`) is never read: ``reason`` says why."""
    if reduced_px is None:
        return CopyLookup(None, None, prepared, "this run reduces no step, so it reads no copy" if prepared else None)
    need = PrepareSettings(reduced_px, min_scale)
    if prepared is not None:
        candidates = [Path(prepared)]
    else:
        exact = default_out_dir(data, reduced_px)
        candidates = ([exact] if exact.exists() else []) + larger_copies_beside(data, reduced_px)
    first_reason = None
    for out in candidates:
        reason = stale_reason(data, sources, out, need)
        if reason is None:
            return CopyLookup(copies_for(data, sources, out), out, out)
        first_reason = first_reason or (out, reason)
    if first_reason is None:
        return CopyLookup(None, None)
    return CopyLookup(None, None, *first_reason)


def prepare_for_run(
    data: Path,
    size_px: int,
    schedule,
    epochs: int,
    batch_size: int,
    min_scale: float,
    *,
    valid_pct: float | None = None,
    seed: int = 0,
    out_dir: Path | None = None,
    quality: int = DEFAULT_QUALITY,
    workers: int = 0,
    trd_version: str = "",
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[PrepareSettings, PrepareResult]:
    """The copy a ``trd train`` run with these options reads: its largest reduced size, planned as the
    run will plan it, and its crops; written in ``out_dir`` (default: beside the data)."""
    from trdcli.core.errors import ConfigError
    from trdcli.data.folders import require_readable_if_few, scan_image_folder

    if not 1 <= quality <= 95:
        raise ConfigError(f"`quality` must be a JPEG quality in [1, 95], got {quality}")
    folder = scan_image_folder(data, valid_pct, seed)
    require_readable_if_few(folder, batch_size)
    schedule.validate(size_px)
    reduced_px = largest_reduced_px(schedule, len(folder.train), batch_size, epochs, size_px)
    if reduced_px is None:
        raise ConfigError("this schedule reduces no step, so there is nothing to prepare: give `low_res` or a preset")
    settings = PrepareSettings(reduced_px, min_scale, quality, trd_version=trd_version)
    out = Path(out_dir) if out_dir is not None else default_out_dir(folder.root, reduced_px)
    sources = [path for path, _ in folder.train]
    return settings, prepare_copy(folder.root, sources, out, settings, workers=workers, progress=progress)
