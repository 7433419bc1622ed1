"""Feature-map trunks of torchvision classifiers, as the official BALNMP ``BackboneBuilder`` cuts them.

Each trunk keeps the torchvision child modules (and so the torchvision state-dict key names) that the
official extractor ``nn.Sequential(*list(model.children())[:-1])`` runs, minus any final pooling that
our pooling modes replace:

=============  ===============================================  ==========================
encoder        trunk children                                   feature map at 224 px
=============  ===============================================  ==========================
vgg16_bn       ``features``, ``avgpool`` (AdaptiveAvgPool 7x7)  512 x 7 x 7 (pool5)
alexnet        ``features``, ``avgpool`` (AdaptiveAvgPool 6x6)  256 x 6 x 6
resnet18/50    ``conv1`` ... ``layer4``                         512 / 2048 x 7 x 7
densenet121    ``features`` (ends with BN ``norm5``, no ReLU)   1024 x 7 x 7
inception_v3   ``Conv2d_1a_3x3`` ... ``Mixed_7c``               2048 x 5 x 5
=============  ===============================================  ==========================

DenseNet: the official extractor is ``features`` only, so its map ends with BatchNorm ``norm5`` and no
ReLU (torchvision's own classifier path applies a ReLU before pooling). We keep the official map for
every mode, so ``avg``/``max`` pool the un-activated ``norm5`` output too.

Inception-v3 runs at 224 px (as the official code feeds it) with ``transform_input=True`` (torchvision's
default for its pretrained weights: ImageNet-normalised input is re-normalised to the (x-0.5)/0.5 the
weights expect) and without the auxiliary classifier. The official code also left ``F.dropout`` active on
the pooled output; an eval-mode extractor has no dropout.

ImageNet weights are torchvision's ``IMAGENET1K_V1`` (what the official ``pretrained=True`` loads),
read from the torch hub cache; when the file is missing they are downloaded only if the host answers
within 1.5 s, so an offline machine gets the error that says how to provide them at once.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from balnmp_cache.errors import EncoderError

__all__ = ["TORCHVISION_LAYOUTS", "TorchvisionLayout", "Trunk", "build_trunk", "hub_weights"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TorchvisionLayout:
    """How one torchvision classifier becomes a trunk.

    Attributes:
        weights_enum: name of the torchvision weights enum (its ``IMAGENET1K_V1`` member is used).
        keep: child modules the trunk runs, in order.
        official_children: children of the official extractor ``children()[:-1]`` by index, to map
            official BALNMP checkpoint keys ``image_feature_extractor[.extractor].{j}.*``; ``None`` when
            the official code used a local copy with unknown child order.
        head_prefixes: state-dict prefixes of the dropped classifier, ignored in full-model checkpoints.
        meta_init: ``"vgg"`` or ``"default"`` to build a random trunk without allocating the classifier
            (vgg16_bn's classifier has 120 M parameters); ``None`` to build the whole model.
    """

    weights_enum: str
    keep: tuple[str, ...]
    official_children: tuple[str, ...] | None
    head_prefixes: tuple[str, ...]
    meta_init: str | None = None


_RESNET = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
_INCEPTION = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c",
)  # fmt: skip

TORCHVISION_LAYOUTS: dict[str, TorchvisionLayout] = {
    "vgg16_bn": TorchvisionLayout(
        "VGG16_BN_Weights", ("features", "avgpool"), ("features", "avgpool"), ("classifier.",), meta_init="vgg"
    ),
    "alexnet": TorchvisionLayout(
        "AlexNet_Weights", ("features", "avgpool"), ("features", "avgpool"), ("classifier.",), meta_init="default"
    ),
    "resnet18": TorchvisionLayout("ResNet18_Weights", _RESNET, (*_RESNET, "avgpool"), ("fc.",)),
    "resnet50": TorchvisionLayout("ResNet50_Weights", _RESNET, (*_RESNET, "avgpool"), ("fc.",)),
    "densenet121": TorchvisionLayout("DenseNet121_Weights", ("features",), ("features",), ("classifier.",)),
    "inception_v3": TorchvisionLayout("Inception_V3_Weights", _INCEPTION, None, ("fc.", "AuxLogits.")),
}

# torchvision's DenseNet checkpoints name "norm.1" what the module calls "norm1" (torchvision densenet.py).
_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)
_OFFICIAL_PREFIX = re.compile(r"^image_feature_extractor\.(?:extractor\.)?(\d+)\.(.+)$")


class Trunk(nn.Sequential):
    """Children of a torchvision classifier run in order: (B, 3, H, W) -> feature map (B, C, h, w)."""

    def __init__(self, name: str, children: OrderedDict[str, nn.Module], *, transform_input: bool = False):
        super().__init__(children)
        self.encoder_name = name
        self.transform_input = transform_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:  # torchvision Inception3._transform_input
            x = torch.cat(
                (
                    x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                    x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                    x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5,
                ),
                dim=1,
            )
        return super().forward(x)

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Translate full torchvision checkpoints, official BALNMP checkpoints and legacy DenseNet keys.

        * Official BALNMP (balnmp.md §3.6): ``image_feature_extractor.extractor.{j}.*`` (2022 code) or
          ``image_feature_extractor.{j}.*`` (2021 ``model.py``) becomes ``{official_children[j]}.*``;
          the MIL head's keys (``attention_aggregator.*``, ``classifier.*``) are dropped.
        * Full torchvision models: the classifier's keys (``classifier.*``, ``fc.*``, ``AuxLogits.*``) are dropped.
        """
        layout = TORCHVISION_LAYOUTS[self.encoder_name]
        if any(key.startswith("image_feature_extractor.") for key in state_dict):
            state_dict = self._from_official(state_dict, layout)
        else:
            dropped = [k for k in state_dict if k.startswith(layout.head_prefixes)]
            if dropped:
                heads = ", ".join(layout.head_prefixes)
                log.info(
                    "ignoring %d classifier keys (%s) of a full %s checkpoint",
                    len(dropped), heads, self.encoder_name,
                )
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(layout.head_prefixes)}
        if self.encoder_name.startswith("densenet"):
            state_dict = {_DENSENET_LEGACY.sub(r"\1\2", k): v for k, v in state_dict.items()}
        return state_dict

    def _from_official(self, state_dict: dict[str, torch.Tensor], layout: TorchvisionLayout) -> dict[str, torch.Tensor]:
        if layout.official_children is None:
            raise EncoderError(
                f"official BALNMP checkpoints cannot be mapped onto '{self.encoder_name}' (the official code used a "
                "local copy of it); pass --weights with a torchvision-layout checkpoint, --weights imagenet or "
                "--weights random"
            )
        mapped: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            match = _OFFICIAL_PREFIX.match(key)
            if match is None:
                if key.startswith("image_feature_extractor."):
                    mapped[key] = value  # left unmapped so the strict load reports it
                continue  # the MIL head
            index, rest = int(match.group(1)), match.group(2)
            if index >= len(layout.official_children):
                mapped[key] = value
                continue
            mapped[f"{layout.official_children[index]}.{rest}"] = value
        log.info("mapped %d official BALNMP backbone keys onto %s", len(mapped), self.encoder_name)
        return mapped


def hub_weights(name: str) -> tuple[object, Path, str]:
    """The torchvision weights member, its torch hub cache path and its download URL for ``name``."""
    import torchvision.models as tvm

    weights = getattr(tvm, TORCHVISION_LAYOUTS[name].weights_enum).IMAGENET1K_V1
    url = weights.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return weights, path, url


def missing_weights_message(name: str, path: Path, url: str) -> str:
    return (
        f"ImageNet weights for '{name}' are not available offline: {path} does not exist. "
        f"Download {url} and save it as {path} (the torch hub cache; set TORCH_HOME to move it), "
        f"or pass --weights PATH with a checkpoint of '{name}', or --weights random"
    )


def _reachable(url: str, timeout_s: float = 1.5) -> bool:
    """Whether the weights' host answers within ``timeout_s`` (offline machines fail fast, never hang)."""
    import socket
    import threading
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout_s):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # name resolution ignores socket timeouts
    thread.start()
    thread.join(timeout_s)
    return bool(answer and answer[0])


def _init_vgg(trunk: nn.Module) -> None:
    # torchvision VGG.__init__ for the convolutional part.
    for module in trunk.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.constant_(module.bias, 0)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()


def _init_default(trunk: nn.Module) -> None:
    for module in trunk.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


def build_trunk(name: str, pretrained: bool) -> Trunk:
    """Build the trunk of torchvision model ``name``, with ImageNet weights from the hub cache if ``pretrained``.

    Raises:
        EncoderError: ``pretrained``, the weights file is not in the torch hub cache and cannot be
            downloaded (an unreachable host is detected within 1.5 s, so nothing hangs offline).
    """
    import torchvision.models as tvm

    layout = TORCHVISION_LAYOUTS[name]
    factory = getattr(tvm, name)
    kwargs: dict[str, object] = {}
    if name == "inception_v3" and not pretrained:
        kwargs = {"aux_logits": False, "init_weights": True, "transform_input": True}
    if pretrained:
        weights, path, url = hub_weights(name)
        if not path.is_file():
            if not _reachable(url):
                raise EncoderError(missing_weights_message(name, path, url))
            log.info("downloading ImageNet weights for %s from %s into %s", name, url, path)
        try:
            model = factory(weights=weights, progress=False)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; a truncated download a RuntimeError
            raise EncoderError(f"{missing_weights_message(name, path, url)} (download failed: {err})") from err
        log.info("loaded torchvision %s from %s", weights, path)
    elif layout.meta_init is not None:
        with torch.device("meta"):
            model = factory(weights=None)
    else:
        model = factory(weights=None, **kwargs)
    children = OrderedDict((child, getattr(model, child)) for child in layout.keep)
    trunk = Trunk(name, children, transform_input=bool(getattr(model, "transform_input", False)))
    if not pretrained and layout.meta_init is not None:
        trunk.to_empty(device="cpu")
        (_init_vgg if layout.meta_init == "vgg" else _init_default)(trunk)
    return trunk
