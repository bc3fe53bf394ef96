"""Pydantic models of ``registry.yaml`` entries."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Task = Literal["classification", "segmentation", "video-prediction", "activity-recognition", "generative"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """What a model eats: ``shape`` without the batch dimension (C, H, W) or (T, C, H, W)."""

    shape: List[int]
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    num_classes: Optional[int] = None
    classifier: Optional[str] = Field(None, description="dotted module path of the classifier head")
    first_conv: Optional[str] = Field(None, description="dotted module path of the first convolution")

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: List[int]) -> List[int]:
        if not v or any(d <= 0 for d in v):
            raise ValueError(f"expected a non-empty list of positive sizes, got {v}")
        return v

    @field_validator("num_classes")
    @classmethod
    def _classes(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and v < 0:
            raise ValueError(f"expected a number of classes >= 0, got {v}")
        return v

    @model_validator(mode="after")
    def _mean_std(self) -> "InputSpec":
        for key in ("mean", "std"):
            val = getattr(self, key)
            if val is not None and len(val) != self.channels:
                raise ValueError(f"{key} has {len(val)} values but the input has {self.shape} (channels first)")
        return self

    @property
    def channel_axis(self) -> int:
        """Index of the channel count in ``shape``: C of (C, H, W) and of (T, C, H, W); 0 for a flat input."""
        return len(self.shape) - 3 if len(self.shape) >= 3 else 0

    @property
    def channels(self) -> int:
        """The number of input channels."""
        return self.shape[self.channel_axis]

    def shape_with_channels(self, channels: int) -> List[int]:
        """``shape`` with ``channels`` input channels."""
        shape = list(self.shape)
        shape[self.channel_axis] = channels
        return shape


class Reference(_Strict):
    """The dissertation result an entry reproduces."""

    section: str
    table: Optional[str] = None
    metrics: Dict[str, float] = Field(default_factory=dict)
    note: Optional[str] = None


class Weights(_Strict):
    """Published weights: a safetensors file on the Hub, optionally bundled in the plugin."""

    hf_hub_id: str
    revision: str = "main"
    filename: str = "model.safetensors"
    sha256: str
    bundled: Optional[str] = Field(None, description="path relative to the registry file's folder")
    metrics: Dict[str, float] = Field(default_factory=dict)
    data: Optional[str] = Field(None, description="what the weights were trained and measured on")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _SHA256.match(v):
            raise ValueError(f"expected 64 lowercase hex digits, got {v!r} ({len(v)} characters)")
        return v

    @field_validator("filename", "bundled")
    @classmethod
    def _safetensors(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.endswith(".safetensors"):
            raise ValueError(f"weights must be a .safetensors file, got {v!r}")
        return v


ENTRY_FIELDS = ("family", "builder", "args", "task", "dataset", "input", "reference", "tags", "description")
"""What defines a model besides its name: how it is built and fed (not its weights, not where it was read)."""


class ModelEntry(_Strict):
    """One model of the zoo."""

    name: str
    family: str
    builder: str
    args: Dict[str, Any] = Field(default_factory=dict)
    task: Task = "classification"
    dataset: str
    input: InputSpec
    reference: Optional[Reference] = None
    tags: List[str] = Field(default_factory=list)
    weights: Optional[Weights] = None
    description: Optional[str] = None
    source: str = Field("", description="file the entry came from (set by the loader)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.\-]*", v):
            raise ValueError(f"model names use lowercase letters, digits, '_', '.', '-'; got {v!r}")
        return v

    def timm_dense_name(self) -> Optional[str]:
        """The timm architecture of an entry that is a plain timm model (tag ``timm-dense``), else ``None``."""
        if "timm-dense" in self.tags and isinstance(self.args.get("backbone"), str):
            return self.args["backbone"]
        return None
