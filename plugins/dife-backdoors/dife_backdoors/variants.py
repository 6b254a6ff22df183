"""Blended, SIG and WaNet: the CleanCLIP-style poisoning variants.

Each is ContrastivePoisoning's recipe (:func:`build_poisoning`: poison a share
of the training pairs with an image trigger and a target-class caption, then
continue contrastive training of both towers) with another trigger family:

- ``blended`` (Chen et al. 2017): the image blended with a fixed random-noise
  pattern, ``x' = (1 - alpha) x + alpha p``;
- ``sig`` (Barni et al. 2019): a horizontal sinusoid added to the image;
- ``wanet`` (Nguyen & Tran, ICLR'21): a smooth fixed warping field.

Only the config defaults and the card differ; see docs/attacks-suite.md for
why the trigger strengths differ from the papers'.
"""

from __future__ import annotations

import attrs

from dife_core.types import Attack, AttackCard

from .contrastive_poisoning import PoisoningConfig, _doc, build_poisoning


@attrs.frozen
class BlendedConfig(PoisoningConfig):
    """Blended: a random-noise pattern blended at alpha 0.3 into 10 % of the pairs, 300 steps.

    CleanCLIP blends at 0.2. On the default world a whole-image blend is a
    fainter feature than a patch: at ContrastivePoisoning's budget (alpha 0.2,
    5 %, 200 steps) it reached TS 0.171; alpha 0.3, 10 % and 300 steps reach
    0.948 with clean accuracy 0.937 (clean model 0.929).
    """

    trigger: str = _doc("blend", "registered image trigger blended into poisoned images")
    trigger_params: dict = _doc(attrs.Factory(lambda: {"alpha": 0.3}),
                                "trigger parameters over the trigger's defaults (see `dife triggers`)")
    poison_rate: float = _doc(0.10, "share of training pairs poisoned (CleanCLIP: 0.003 of CC3M)")
    steps: int = _doc(300, "training steps from the clean checkpoint")


@attrs.frozen
class SigConfig(PoisoningConfig):
    """SIG: sinusoid of amplitude 0.15, 6 periods.

    SIG's 20/255 is 0.08. On the default world amplitude 0.1 reached TS 0.872
    and 0.15 reaches 0.948 with clean accuracy 0.938 (clean model 0.929), at
    ContrastivePoisoning's budget (5 %, 200 steps).
    """

    trigger: str = _doc("sig", "registered image trigger added to poisoned images")
    trigger_params: dict = _doc(attrs.Factory(lambda: {"delta": 0.15, "frequency": 6.0}),
                                "trigger parameters over the trigger's defaults (see `dife triggers`)")


@attrs.frozen
class WanetConfig(PoisoningConfig):
    """WaNet: 4x4 control grid, strength 6, 20 % of the pairs, 600 steps.

    WaNet's strength 0.5 is far too faint for a few hundred steps of a tiny
    ResNet at 32 px. On the default world strength 4 at ContrastivePoisoning's
    budget reached TS 0.105, strength 8 / 10 % / 300 steps 0.793, strength
    10 / 15 % / 400 steps 0.931. A warp that strong is a corruption of its
    own: the *clean* model's image features leave their class under it
    (image kNN dH@10 +0.33 on the clean model at strength 10, +0.24 at 8,
    +0.13 at 6). Strength 6 keeps the clean model's neighbours in place and
    is learned with a larger budget: 15 % / 400 steps reach TS 0.780, 20 % /
    600 steps 0.892 with clean accuracy 0.945 (clean model 0.939).
    """

    trigger: str = _doc("wanet", "registered image trigger warping poisoned images")
    trigger_params: dict = _doc(attrs.Factory(lambda: {"grid_size": 4, "strength": 6.0}),
                                "trigger parameters over the trigger's defaults (see `dife triggers`)")
    poison_rate: float = _doc(0.2, "share of training pairs poisoned (CleanCLIP: 0.003 of CC3M)")
    steps: int = _doc(600, "training steps from the clean checkpoint")


def _card(name: str, title: str, reference: str) -> AttackCard:
    return AttackCard(name=name, title=title, route="data poisoning", modifies="both towers",
                      trigger_channel="image", native_protocol="zero-shot TS", reference=reference,
                      native_interface="zero-shot-classification",
                      probe="branch-swap")


CLEANCLIP = "poisoning as in CleanCLIP (Bansal et al., ICCV 2023)"
ATTACKS = (
    Attack(card=_card("blended", "Blended (CleanCLIP variant)",
                      "Chen et al., Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning, 2017; "
                      f"{CLEANCLIP}"),
           config=BlendedConfig, build=build_poisoning),
    Attack(card=_card("sig", "SIG (CleanCLIP variant)",
                      "Barni et al., A New Backdoor Attack in CNNs by Training Set Corruption Without Label Poisoning, "
                      f"ICIP 2019; {CLEANCLIP}"),
           config=SigConfig, build=build_poisoning),
    Attack(card=_card("wanet", "WaNet (CleanCLIP variant)",
                      f"Nguyen & Tran, WaNet - Imperceptible Warping-based Backdoor Attack, ICLR 2021; {CLEANCLIP}"),
           config=WanetConfig, build=build_poisoning),
)
