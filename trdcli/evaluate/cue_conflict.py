"""Cue-conflict shape bias (Geirhos et al., ICLR 2019, arXiv 1811.12231) for networks trained on ImageNet-1k.

The stimuli (1,280 images, CC-BY 4.0, in the public repository rgeirhos/texture-vs-shape under
``stimuli/style-transfer-preprocessed-512``; not shipped with trd) show the shape of one of 16
categories with the texture of another, named ``<shape>/<shape>N-<texture>M.png``. A network's
1,000 ImageNet probabilities become one of the 16 decisions by averaging each category's
ImageNet classes (the published mapping below, by WordNet ID); images whose shape and texture
agree are dropped. **Shape bias** = shape decisions / (shape decisions + texture decisions).
For reference, torchvision's ResNet-50 scores about 21%.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trdcli.core.errors import DataError

# The ImageNet classes of each of the 16 categories, by WordNet ID: the index lists of
# rgeirhos/texture-vs-shape code/helper/human_categories.py (the `*_indices`, which its
# probabilities-to-decision mapping uses), read through its ImageNet class list.
# fmt: off
CATEGORY_WNIDS: dict[str, tuple[str, ...]] = {
    "airplane": ("n02690373",),
    "bear": ("n02132136", "n02133161", "n02134084", "n02134418",),
    "bicycle": ("n02835271", "n03792782",),
    "bird": (
        "n01514859", "n01530575", "n01531178", "n01532829", "n01534433", "n01537544", "n01558993", "n01560419",
        "n01582220", "n01592084", "n01601694", "n01614925", "n01616318", "n01622779", "n01795545", "n01796340",
        "n01797886", "n01798484", "n01817953", "n01818515", "n01819313", "n01820546", "n01824575", "n01828970",
        "n01829413", "n01833805", "n01843065", "n01843383", "n01855032", "n01855672", "n01860187", "n02002556",
        "n02002724", "n02006656", "n02007558", "n02009229", "n02009912", "n02011460", "n02013706", "n02017213",
        "n02018207", "n02018795", "n02025239", "n02027492", "n02028035", "n02033041", "n02037110", "n02051845",
        "n02056570",
    ),
    "boat": ("n02951358", "n03344393", "n03662601", "n04273569", "n04612504",),
    "bottle": ("n02823428", "n03937543", "n03983396", "n04557648", "n04560804", "n04579145", "n04591713",),
    "car": ("n02814533", "n03100240", "n04285008",),
    "cat": ("n02123045", "n02123159", "n02123394", "n02123597", "n02124075", "n02125311",),
    "chair": ("n02791124", "n03376595", "n04099969", "n04429376",),
    "clock": ("n02708093", "n03196217", "n04548280",),
    "dog": (
        "n02085782", "n02085936", "n02086079", "n02086240", "n02086646", "n02086910", "n02087046", "n02087394",
        "n02088094", "n02088238", "n02088364", "n02088466", "n02088632", "n02089078", "n02089867", "n02089973",
        "n02090379", "n02090622", "n02090721", "n02091032", "n02091134", "n02091244", "n02091467", "n02091635",
        "n02091831", "n02092002", "n02092339", "n02093256", "n02093428", "n02093647", "n02093754", "n02093859",
        "n02093991", "n02094114", "n02094258", "n02094433", "n02095314", "n02095570", "n02095889", "n02096051",
        "n02096294", "n02096437", "n02096585", "n02097047", "n02097130", "n02097209", "n02097298", "n02097474",
        "n02097658", "n02098105", "n02098286", "n02099267", "n02099429", "n02099601", "n02099712", "n02099849",
        "n02100236", "n02100583", "n02100735", "n02100877", "n02101006", "n02101388", "n02101556", "n02102040",
        "n02102177", "n02102318", "n02102480", "n02102973", "n02104029", "n02104365", "n02105056", "n02105162",
        "n02105251", "n02105505", "n02105641", "n02105855", "n02106030", "n02106166", "n02106382", "n02106550",
        "n02106662", "n02107142", "n02107312", "n02107574", "n02107683", "n02107908", "n02108000", "n02108422",
        "n02108551", "n02108915", "n02109047", "n02109525", "n02109961", "n02110063", "n02110185", "n02110627",
        "n02110806", "n02110958", "n02111129", "n02111277", "n02111500", "n02112018", "n02112350", "n02112706",
        "n02113023", "n02113624", "n02113712", "n02113799", "n02113978",
    ),
    "elephant": ("n02504013", "n02504458",),
    "keyboard": ("n03085013", "n04505470",),
    "knife": ("n03041632",),
    "oven": ("n04111531",),
    "truck": ("n03345487", "n03417042", "n03770679", "n03796401", "n03930630", "n03977966", "n04461696", "n04467665",),
}
# fmt: on
CATEGORIES = tuple(sorted(CATEGORY_WNIDS))
_STIMULUS = re.compile(r"^([a-z]+)\d+-([a-z]+)\d+\.(png|jpe?g)$", re.I)


@dataclass(frozen=True)
class Stimulus:
    path: Path
    shape: str
    texture: str


def find_stimuli(root: Path, categories: Sequence[str] = CATEGORIES) -> list[Stimulus]:
    """The cue-conflict images under ``root`` (``<shape>/<shape>N-<texture>M.png``), shape and texture differing."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"cue-conflict folder not found: {root}")
    stimuli = []
    for path in sorted(root.glob("*/*")):
        match = _STIMULUS.match(path.name)
        if not match or match.group(1) not in categories or match.group(2) not in categories:
            continue
        if match.group(1) != match.group(2):
            stimuli.append(Stimulus(path, match.group(1), match.group(2)))
    if not stimuli:
        raise DataError(
            f"no cue-conflict images (<shape>/<shape>N-<texture>M.png, of {len(categories)} categories) in {root}"
        )
    return stimuli


def category_indices(classes: Sequence[str]) -> dict[str, list[int]]:
    """For each category, the positions of its ImageNet classes among a run's ``classes`` (WordNet IDs)."""
    position = {wnid: i for i, wnid in enumerate(classes)}
    missing = [w for wnids in CATEGORY_WNIDS.values() for w in wnids if w not in position]
    if len(classes) != 1000 or missing:
        raise DataError(
            f"cue-conflict shape bias needs a network trained on the 1,000 ImageNet classes (WordNet IDs as class "
            f"folder names); this one has {len(classes)} classes" + (f" and lacks e.g. {missing[0]}" if missing else "")
        )
    return {category: [position[w] for w in wnids] for category, wnids in CATEGORY_WNIDS.items()}


def decisions(probabilities: np.ndarray, indices: dict[str, list[int]]) -> list[str]:
    """One of the 16 categories per row of ``probabilities`` (n x classes): the largest mean over its classes."""
    means = np.stack([probabilities[:, indices[c]].mean(axis=1) for c in CATEGORIES], axis=1)
    return [CATEGORIES[i] for i in means.argmax(axis=1)]


@dataclass
class ShapeBias:
    shape_decisions: int
    texture_decisions: int
    images: int
    by_category: dict[str, dict[str, int]] = field(default_factory=dict)  # by the stimulus's shape

    @property
    def shape_bias(self) -> float:
        decided = self.shape_decisions + self.texture_decisions
        return self.shape_decisions / decided if decided else float("nan")

    @property
    def shape_bias_ci95(self) -> tuple[float, float]:
        """The shape bias's 95% Wilson interval over the decided conflict images."""
        return wilson_interval(self.shape_decisions, self.shape_decisions + self.texture_decisions)

    @property
    def cue_accuracy(self) -> float:
        """Decisions that name either cue, of all conflict images."""
        return (self.shape_decisions + self.texture_decisions) / self.images


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927; 95% at z = 1.96); (nan, nan) without trials.

    Unlike the normal approximation it stays inside [0, 1] and keeps its coverage near 0 and 1, where
    a shape bias on a few dozen decisions often lies (Newcombe 1998, Statistics in Medicine 17:857).
    """
    if trials == 0:
        return float("nan"), float("nan")
    p, z2 = successes / trials, z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def score(stimuli: Sequence[Stimulus], decided: Sequence[str], categories: Sequence[str] = CATEGORIES) -> ShapeBias:
    """Shape and texture decisions over the conflict ``stimuli``, in total and by the stimulus's shape."""
    result = ShapeBias(0, 0, len(stimuli), {c: {"shape": 0, "texture": 0, "images": 0} for c in categories})
    for stimulus, decision in zip(stimuli, decided, strict=True):
        row = result.by_category[stimulus.shape]
        row["images"] += 1
        if decision == stimulus.shape:
            result.shape_decisions += 1
            row["shape"] += 1
        elif decision == stimulus.texture:
            result.texture_decisions += 1
            row["texture"] += 1
    return result
