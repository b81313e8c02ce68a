"""What the service holds: an immutable model state swapped atomically on reload, and the model runner.

    >>> from rjepa_serve.settings import ServeSettings
    >>> svc = ServiceState(ServeSettings(storage="/tmp/empty-store", load_student=False, reload_interval_s=0))
    >>> svc.current is None  # nothing loaded until `await svc.reload()` (the app's lifespan does it)
    True

A request reads `svc.current` once and keeps that `ModelState` for its whole life, so a reload that
lands mid-request never changes the model under it: the new state is built aside (in a worker
thread, not the model threads) and then assigned in one step. Model calls go through a `ModelRunner`:
one worker thread, so its calls never overlap, with a wall-time limit covering the wait in the queue, and a
bounded queue: past `max_queue_generation` / `max_queue_scoring` calls in flight, a request is refused at
once with 429 and a Retry-After header (the expected drain time) instead of waiting.
There are two runners: `generation` (the student: sampling, log-probs, extraction, then scoring of the
candidates) and `scoring` (/score, /predict_masked), so a latent-scoring call does not queue behind a
long generation. R-JEPA inference is read-only (eval mode, no grad, no buffers written), which is what
makes its use from both threads safe; the student is only ever used by the generation thread.

An llm with no checkpoint of its own but a published latent adapter (the `calibration_adapter` asset,
`rjepa_core.transfer`) is served through it: its latents go through W_in into the checkpoint the adapter
was fitted against, predictions come back through W_out. When the llm's own LATEST lands, the next reload
switches to it; `/health` says which of the two is served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from rjepa_serve.settings import ServeSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


class ServiceBusy(Exception):
    """The model queue did not reach this call within the time limit (nothing ran)."""


class ServiceTimeout(Exception):
    """The model call started but did not finish within the time limit."""


@dataclass(frozen=True)
class ModelState:
    checkpoint_id: str  # run id of the published checkpoint
    llm_tag: str  # student the checkpoint was trained on
    dataset_version: str | None  # dataset version it was trained on
    path: str  # checkpoint folder actually loaded
    pointer_path: str  # folder the LATEST pointer named (path may be its .old fallback)
    hidden_size: int  # student latent width the checkpoint expects
    max_steps: int  # longest chain the model covers
    layer_idx: int | None  # student layer the latents come from (None: the student spec's)
    pooling: str  # how a step's token states were pooled (mean | last | mean_last), from the checkpoint
    scorer: Any  # rjepa_core.jepa.scoring.JEPAScorer
    model: Any  # rjepa_core.jepa.model.RJEPA (eval mode)
    weights: Any  # rjepa_core.inference.rerank.RerankWeights from the checkpoint's score config
    student: Any | None  # rjepa_core.llm.adapter.StudentLLM, or None when generation is off
    student_error: str | None  # why there is no student
    loaded_at: str  # ISO time of the load
    meta: dict[str, Any] = field(default_factory=dict)  # the checkpoint's meta.json
    question_pooling: str = "token"  # how the question latent was taken (token | span), from the checkpoint
    decoder: DecoderSlot | None = None  # the latent decoder of the checkpoint's llm and dataset version
    adapter_id: str | None = None  # run id of the latent adapter the llm is served through (None: own checkpoint)
    reference_llm: str | None = None  # the llm whose checkpoint is served through the adapter

    @property
    def serving(self) -> str:
        """What /health reports: the llm's own checkpoint, or an adapter into another llm's."""
        if self.adapter_id is None:
            return f"own checkpoint {self.checkpoint_id}"
        return f"adapter {self.adapter_id} → reference checkpoint {self.checkpoint_id} ({self.reference_llm})"


class DecoderSlot:
    """The latent decoder of one (llm, dataset version), loaded on first use and again when its folder changes.

    The decoder is materialized after the checkpoint (`latent_decoder` depends on `jepa_checkpoint`), so
    the service looks for it at request time rather than only when the checkpoint pointer moves.
    """

    def __init__(self, folder: Path, hidden_size: int, device: str) -> None:
        self.folder, self.hidden_size, self.device = folder, hidden_size, device
        self._lock = threading.Lock()
        self._stamp: float | None = None
        self._decoder: Any = None

    def get(self) -> Any:
        """The loaded TrainedDecoder; RuntimeError (a 503 for the routes) saying what to do when there is none."""
        from rjepa_core.jepa.decoder import META, load_decoder

        meta = self.folder / META
        try:
            stamp = meta.stat().st_mtime
        except FileNotFoundError:
            raise RuntimeError(
                f"no latent decoder at {self.folder}: materialize the `latent_decoder` asset for this llm and "
                "dataset version (Dagster UI, or `rjepa demo --from latent_decoder`)"
            ) from None
        with self._lock:
            if self._decoder is None or stamp != self._stamp:
                dec = load_decoder(self.folder, device=self.device)
                if dec.latent_dim != self.hidden_size:
                    raise RuntimeError(
                        f"the latent decoder at {self.folder} reads width {dec.latent_dim} but the checkpoint's "
                        f"latents are {self.hidden_size} wide: re-materialize `latent_decoder`"
                    )
                self._decoder, self._stamp = dec, stamp
            return self._decoder


class ServiceOverloaded(Exception):
    """The model queue is full: the call was refused at once (a 429 with Retry-After for the client)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelRunner:
    """Serialises model calls on one worker thread, each bounded in wall time (queue included).

    Admission is bounded: at most `max_pending` calls may be queued or running at once; one more is refused
    at once with `ServiceOverloaded` (never queued, so a burst cannot make every caller wait out the time
    limit). A call counts until its thread work ends, also after its caller gave up on a timeout. The
    suggested retry delay is the queue's expected drain time: pending calls × the recent mean call time.
    """

    def __init__(self, name: str = "model", max_pending: int = 0, max_retry_after_s: int = 60) -> None:
        self.name = name
        self.max_pending = max_pending  # 0 = unbounded
        self.max_retry_after_s = max_retry_after_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rjepa-{name}")
        self._lock = threading.Lock()
        self._pending = 0
        self._mean_s = 1.0  # running mean of call times (exponential, weight 0.2 on the newest)

    @property
    def pending(self) -> int:
        return self._pending

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        start = time.perf_counter()
        try:
            return fn(*args)
        except StopIteration as exc:  # a future cannot carry StopIteration: it would never complete
            raise RuntimeError(f"model call raised StopIteration: {exc!r}") from exc
        finally:
            with self._lock:
                self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - start)

    def _done(self, _fut: concurrent.futures.Future) -> None:
        with self._lock:
            self._pending -= 1

    def retry_after_s(self) -> int:
        with self._lock:
            wait = self._pending * self._mean_s
        return max(1, min(self.max_retry_after_s, int(wait) + 1))

    def _admit(self) -> None:
        with self._lock:
            if not self.max_pending or self._pending < self.max_pending:
                self._pending += 1
                return
            pending = self._pending
        raise ServiceOverloaded(
            f"the {self.name} queue is full ({pending} calls queued or running, limit {self.max_pending}): "
            "retry after the Retry-After delay",
            self.retry_after_s(),
        )

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        self._admit()
        try:
            fut = self._pool.submit(self._call, fn, *args)
        except BaseException:
            self._done(None)
            raise
        fut.add_done_callback(self._done)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout)
        except TimeoutError:
            if fut.cancel():
                raise ServiceBusy(f"the model queue was busy for {timeout:.0f} s: retry later") from None
            raise ServiceTimeout(
                f"the model call did not finish within {timeout:.0f} s: ask for fewer candidates or tokens"
            ) from None

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RecentChats:
    """The last N chat results by interaction id, so /feedback logs what the service really answered."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, key: str | None) -> dict[str, Any] | None:
        return self._items.get(key) if key else None


def no_checkpoint_message(settings: ServeSettings) -> str:
    return (
        f"no R-JEPA checkpoint has been published for llm {settings.llm_tag!r} under {settings.storage}, nor a "
        f"latent adapter into another llm's: materialize the `jepa_checkpoint` asset for this llm (Dagster UI, or "
        f"`rjepa demo`), or `calibration_adapter` to serve it through a reference checkpoint meanwhile "
        f"(`rjepa replay --llms {settings.llm_tag} --adapters-only`), then POST /admin/reload or wait for the next poll"
    )


def read_pointer(settings: ServeSettings) -> dict[str, Any] | None:
    """The LATEST checkpoint pointer of the configured llm; without one, a pointer to the checkpoint its newest
    latent adapter was fitted against (with an "adapter" entry); None when there is neither."""
    from rjepa_core.store.layout import StorageLayout
    from rjepa_core.store.pointers import read_latest_checkpoint

    layout = StorageLayout(settings.storage, pull=False)
    # object storage: fetch only what serving needs (the pointer, its checkpoints and decoders; not latents)
    layout.pull(layout.checkpoints_root(settings.llm_tag), layout.decoders_root(settings.llm_tag))
    own = read_latest_checkpoint(layout, settings.llm_tag)
    from rjepa_serve.adapted import adapter_pointer

    return own if own is not None else adapter_pointer(layout, settings.llm_tag)


def interactions_dir(settings: ServeSettings) -> Path:
    """`<storage>/interactions/`, as the storage layout names it."""
    from rjepa_core.store.layout import StorageLayout

    layout = StorageLayout(settings.storage, pull=False)
    layout.pull(layout.interactions_dir())  # object storage: continue the bucket's files, not a fresh cache's
    return Path(layout.interactions_dir())


def _salt_path(settings: ServeSettings) -> Path:
    """Beside the storage's files (for s3:// in the local cache: set RJEPA_INTERACTIONS_SALT on replicas)."""
    from rjepa_core.store.layout import local_root

    return local_root(settings.storage) / ".interactions_salt"


def publish_storage(settings: ServeSettings, interactions: Any = None) -> list[str]:
    """Object storage: publish what the service wrote (its interaction files), with appends paused so only
    whole lines go; returns the units published. Local storage: nothing to do."""
    from rjepa_core.store.layout import StorageLayout

    layout = StorageLayout(settings.storage, pull=False)
    if layout.remote is None:
        return []
    with interactions.paused() if interactions is not None else contextlib.nullcontext():
        return [u.as_posix() for u in layout.remote.push()]


def open_interaction_log(settings: ServeSettings) -> Any:
    """The interaction log; the salt comes from RJEPA_INTERACTIONS_SALT, else a random one kept in storage."""
    from rjepa_core.interactions import InteractionLog, load_or_create_salt

    secret = settings.interactions_salt
    salt = secret.get_secret_value() if secret else load_or_create_salt(_salt_path(settings))
    return InteractionLog(interactions_dir(settings), salt, settings.workspace, settings.collect_text)


def load_student(settings: ServeSettings, device: str) -> Any:
    from rjepa_core.llm.adapter import StudentLLM
    from rjepa_core.llm.registry import LLMSpec, resolve_spec

    if settings.llm_source:
        spec: Any = LLMSpec(llm_tag=settings.llm_tag, source=settings.llm_source)
    else:
        spec = resolve_spec(settings.llm_tag)
    return StudentLLM.load(spec, device=device)


def load_model_state(
    settings: ServeSettings, pointer: dict[str, Any], student: Any | None, student_error: str | None
) -> ModelState:
    """Load the checkpoint a pointer names (runs in a worker thread; the old state keeps serving)."""
    from rjepa_core.inference.rerank import RerankWeights
    from rjepa_core.jepa.checkpoint import load_checkpoint
    from rjepa_core.jepa.scoring import JEPAScorer
    from rjepa_core.llm.extraction import check_pooling, check_question_pooling, pooled_width

    device = settings.resolved_device()
    path = pointer.get("path") or (pointer.get("meta") or {}).get("path")
    if not path:
        raise ValueError(f"LATEST pointer of {settings.llm_tag!r} names no checkpoint path: republish it")
    ck = load_checkpoint(path, device=device)
    meta = dict(ck.meta)
    hidden = int(meta.get("hidden_size") or ck.config.model.hidden_size)
    pooling = check_pooling(str(meta.get("pooling") or "mean"))  # checkpoints before the option pooled means
    scorer = JEPAScorer.from_checkpoint(ck, device=device)
    model, adapter_id, reference = ck.model, None, None
    version = pointer.get("dataset_version") or meta.get("dataset_version")
    if pointer.get("adapter"):
        from rjepa_serve.adapted import through_adapter

        scorer, meta, adapter_id = through_adapter(ck, pointer["adapter"], device)
        model, reference = scorer.model, str(pointer.get("llm_tag"))
        hidden, pooling = model.hidden_size, check_pooling(str(meta.get("pooling") or "mean"))
        version = pointer["adapter"].get("dataset_version") or version
    if student is not None and pooled_width(int(student.hidden_size), pooling) != hidden:
        student_error = (
            f"checkpoint {pointer.get('run_id')} was trained on latents of width {hidden} ({pooling} pooling) "
            f"but llm {settings.llm_tag!r} gives {pooled_width(int(student.hidden_size), pooling)}: materialize "
            f"`calibration_adapter` for {settings.llm_tag!r} (`rjepa replay --llms {settings.llm_tag} "
            "--adapters-only`) or `jepa_checkpoint` on its latents"
        )
        student = None
    layer = meta.get("layer_idx")
    llm_tag = settings.llm_tag if adapter_id else str(pointer.get("llm_tag") or settings.llm_tag)
    decoder = None
    if version:
        from rjepa_core.store.layout import StorageLayout

        layout = StorageLayout(settings.storage, pull=False)  # read_pointer pulled the decoders
        decoder = DecoderSlot(Path(layout.decoder_dir(llm_tag, version)), hidden, device)
    return ModelState(
        checkpoint_id=str(pointer.get("run_id") or Path(str(path)).parent.name),
        llm_tag=llm_tag,
        dataset_version=version,
        path=str(ck.path),
        pointer_path=str(path),
        hidden_size=hidden,
        max_steps=int(ck.config.model.max_steps),
        layer_idx=int(layer) if layer is not None else None,
        pooling=pooling,
        scorer=scorer,
        model=model,
        weights=RerankWeights.from_score_config(ck.config.score),
        student=student,
        student_error=student_error,
        loaded_at=datetime.now(UTC).isoformat(),
        meta=meta,
        question_pooling=check_question_pooling(str(meta.get("question_pooling") or "token")),
        decoder=decoder,
        adapter_id=adapter_id,
        reference_llm=reference,
    )


class ServiceState:
    """Settings, the current ModelState (or why there is none), the runner, interaction log and metrics."""

    def __init__(self, settings: ServeSettings, metrics: Any = None, interactions: Any = None) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.current: ModelState | None = None
        self.last_error: str | None = None
        self.student: Any | None = None
        self.student_error: str | None = None if settings.load_student else "generation is off (RJEPA_LOAD_STUDENT=0)"
        self._student_tried = False
        # student work (generation, log-probs, extraction) + scoring of its chains
        self.runner = ModelRunner("generation", settings.max_queue_generation, settings.max_retry_after_s)
        # /score and /predict_masked on latents: never queued behind a generation
        self.scoring_runner = ModelRunner("scoring", settings.max_queue_scoring, settings.max_retry_after_s)
        self.metrics = metrics
        self.interactions = interactions
        self.recent = RecentChats(settings.recent_chats)
        self._reload_lock = asyncio.Lock()

    def _student(self) -> None:
        if self._student_tried or not self.settings.load_student:
            return
        self._student_tried = True
        try:
            self.student = load_student(self.settings, self.settings.resolved_device())
        except Exception as exc:  # the scoring routes still work without a student
            self.student_error = f"could not load student {self.settings.llm_tag!r}: {exc}"
            log.warning(self.student_error)

    def _load(self, pointer: dict[str, Any]) -> ModelState:
        self._student()
        return load_model_state(self.settings, pointer, self.student, self.student_error)

    async def reload(self) -> tuple[bool, str]:
        """Load the LATEST checkpoint if it differs from the one served; never raises."""
        async with self._reload_lock:
            try:
                pointer = await asyncio.to_thread(read_pointer, self.settings)
            except Exception as exc:
                self.last_error = f"could not read the LATEST pointer: {exc}"
                self._count_reload("error")
                return False, self.last_error
            if pointer is None:
                self.last_error = no_checkpoint_message(self.settings)
                return False, self.last_error
            cur = self.current
            adapter = (pointer.get("adapter") or {}).get("run_id")
            if cur is not None and (cur.checkpoint_id, cur.pointer_path, cur.adapter_id) == (
                str(pointer.get("run_id")),
                str(pointer.get("path")),
                adapter,
            ):
                return False, f"{cur.serving} is already served"
            try:
                new = await asyncio.to_thread(self._load, pointer)
            except Exception as exc:
                self.last_error = f"could not load checkpoint {pointer.get('run_id')}: {exc}"
                log.error(self.last_error)
                self._count_reload("error")
                return False, self.last_error
            self.current = new  # one assignment: requests in flight keep the state they took
            self.last_error = None
            self._count_reload("loaded")
            if self.metrics is not None:
                self.metrics.set_model(new.checkpoint_id, new.llm_tag, new.dataset_version)
            log.info("serving %s (%s/%s)", new.serving, new.llm_tag, new.dataset_version)
            return True, f"now serving {new.serving}"

    def _count_reload(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.reloads.labels(result=result).inc()

    async def poll(self) -> None:
        """Reload whenever the pointer moves (and publish to object storage); runs until cancelled."""
        interval = self.settings.reload_interval_s
        while True:
            await asyncio.sleep(interval)
            await self.reload()
            await self.publish()

    async def publish(self) -> None:
        """Publish the interaction files to object storage (s3:// storage only); never raises."""
        try:
            await asyncio.to_thread(publish_storage, self.settings, self.interactions)
        except Exception as exc:
            log.error("could not publish interactions to %s: %s", self.settings.storage, exc)

    def uptime(self) -> float:
        return time.monotonic() - self.started
