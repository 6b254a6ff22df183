"""What an interface evaluator (and a mechanism attack's probe) receives.

``evaluate(ctx: CellContext) -> CellResult``. The context hands out cached,
L2-normalised features through the audit's one embedding service, so an
evaluator never calls ``encode_image`` / ``encode_text`` itself: pass
``model=`` (default: the audited checkpoint) and ``triggered=True`` to get the
features with the attack's trigger applied on this cell's channel.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from .embeddings import CLEAN, AppliedTrigger, EmbeddingService


@attrs.define
class MechanismContext:
    """Given to an attack plugin's ``repair_probe(ctx)`` and ``scorer(ctx)``."""

    model: Any  # the audited DualEncoder (towers as shipped)
    clean: Any  # the clean reference DualEncoder, or None
    world: Any
    card: dict  # the per-checkpoint attack card
    path: Optional[str]  # the checkpoint folder (artifacts.safetensors lies there), or None
    manifest: Optional[dict]
    trigger: AppliedTrigger  # the card's trigger (its plain-input component), ready to apply
    embeddings: EmbeddingService
    device: str = "cpu"
    seed: int = 0
    templates: tuple = ()

    def image_features(self, population, *, triggered: bool = False, model=None):
        """Cached features of a population's images (see CellContext.image_features)."""
        return self.embeddings.images(model or self.model, population.name, population.images,
                                      self.trigger if triggered else CLEAN)


@attrs.define
class Mechanism:
    """A mechanism attack's plug-ins for one checkpoint (resolved by the engine)."""

    context: MechanismContext
    scorer: Optional[Any] = None  # fn(pixels) -> logits [N, C]
    repair_probe: Optional[Any] = None  # fn(ctx) -> {"full", "prompt_only", "trigger_only", "both_clean"}


@attrs.define
class CellContext:
    """Everything one (checkpoint, interface) cell is evaluated with."""

    card: Any  # the InterfaceCard
    checkpoint: str  # the row name in results
    model: Any  # the audited DualEncoder
    clean: Any  # the clean reference DualEncoder, or None
    world: Any  # dife_core.populations.World
    attack: Any  # dife_core.engine.applicability.AttackProfile
    channel: str  # the channel the trigger enters through: image, text, none or mechanism
    trigger: AppliedTrigger  # the attack's trigger, ready to apply
    embeddings: EmbeddingService
    options: dict = attrs.Factory(dict)  # [interface_options.<id>] of the spec
    seed: int = 0
    device: str = "cpu"
    templates: tuple = ()  # prompt templates that make class prompts
    ranking_chunk: int = 4096
    mechanism: Optional[Mechanism] = None

    # -- classes --------------------------------------------------------------------
    @property
    def classnames(self) -> tuple:
        return tuple(self.world.classnames)

    @property
    def target_index(self) -> int:
        return self.classnames.index(self.attack.target)

    @property
    def source_index(self) -> Optional[int]:
        s = self.attack.source
        return self.classnames.index(s) if s in self.classnames else None

    def prompts(self, classname: str) -> list:
        """The class's prompts, one per template in use."""
        return [t.format(classname) for t in self.templates]

    # -- features --------------------------------------------------------------------
    def image_features(self, population, *, triggered: bool = False, model=None):
        """L2-normalised image features ``[N, D]`` of ``population`` (anything
        with ``.name`` and ``.images``) through ``model``'s visual tower."""
        trig = self.trigger if triggered else CLEAN
        return self.embeddings.images(model if model is not None else self.model, population.name,
                                      population.images, trig)

    def text_features(self, strings, *, triggered: bool = False, model=None, name: Optional[str] = None):
        """L2-normalised text features ``[N, D]`` through ``model``'s text tower."""
        trig = self.trigger if triggered else CLEAN
        return self.embeddings.texts(model if model is not None else self.model, strings, trig, name=name)

    def class_weights(self, *, model=None, triggered_source: bool = False):
        """Zero-shot class weights ``[C, D]``: per class, the mean of its
        normalised prompt features over the templates, renormalised. With
        ``triggered_source`` the source class's row is built from its
        triggered prompts (the prompt set P^τ)."""
        from .scoring import class_weights

        return class_weights(self.embeddings, model if model is not None else self.model, self.classnames,
                             self.templates,
                             trigger=self.trigger if triggered_source and self.source_index is not None else None,
                             source_index=self.source_index)

    def logit_scale(self) -> float:
        """γ of the clean reference (the logit scale always comes from C)."""
        ref = self.clean if self.clean is not None else self.model
        return float(ref.logit_scale)
