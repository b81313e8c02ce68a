"""`RJEPAClient`: a thin httpx client for every endpoint of the service.

    >>> import numpy as np
    >>> from rjepa_serve.client import RJEPAClient
    >>> with RJEPAClient("http://127.0.0.1:8000") as c:           # doctest: +SKIP
    ...     c.health()["checkpoint_id"]
    ...     c.score(np.random.randn(4, 576))[0]["jepa_loss"]      # one chain (numpy, torch or lists)
    ...     c.score(question="What is 3 + 4?", chain="Step 1: 3 + 4 = 7\nAnswer: 7")[0]["score01"]  # text
    ...     c.chat("What is 3 + 4?", mode="RERANK", k=4)["answer"]

Latents may be numpy arrays, torch tensors or nested lists: a 2-D array is one chain, a 3-D array
or a list of 2-D arrays is a batch. Errors raise `RJEPAError` with the HTTP status and the
service's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np


class RJEPAError(Exception):
    def __init__(self, status: int, detail: Any):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def _matrix(x: Any) -> list[list[float]]:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"a chain's latents must be 2-D (num_steps, hidden_size), got shape {arr.shape}")
    return arr.tolist()


def _vector(x: Any) -> list[float]:
    """A question latent (hidden,) as a flat list."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"a question latent must be 1-D (hidden_size,), got shape {arr.shape}")
    return arr.tolist()


def _is_vector(x: Any) -> bool:
    return (
        hasattr(x, "shape")
        and len(x.shape) == 1
        or (isinstance(x, Sequence) and bool(x) and all(isinstance(v, int | float) for v in x))
    )


def _batch(latents: Any) -> tuple[list[list[list[float]]], bool]:
    """(chains, was_single): a 2-D input is one chain, a 3-D input or a sequence of 2-D inputs a batch."""
    if hasattr(latents, "detach"):
        latents = latents.detach().cpu().float().numpy()
    if isinstance(latents, np.ndarray):
        if latents.ndim == 2:
            return [_matrix(latents)], True
        if latents.ndim == 3:
            return [_matrix(h) for h in latents], False
        raise ValueError(f"latents must be 2-D (one chain) or 3-D (a batch), got shape {latents.shape}")
    if isinstance(latents, Sequence) and latents:
        first = latents[0]
        if hasattr(first, "detach") or (isinstance(first, np.ndarray) and first.ndim == 2):
            return [_matrix(h) for h in latents], False
        depth = np.asarray(first, dtype=object).ndim if isinstance(first, Sequence) else 0
        if depth == 1:
            return [_matrix(latents)], True
        return [_matrix(h) for h in latents], False
    raise ValueError("latents must be a non-empty array, tensor or nested list")


class RJEPAClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        timeout: float = 120.0,
        client: httpx.Client | None = None,
        admin_token: str | None = None,
    ):
        """`client` may be any httpx.Client (e.g. FastAPI's TestClient) to bypass the network."""
        self._owned = client is None
        self.http = client or httpx.Client(base_url=base_url, timeout=timeout)
        self.admin_token = admin_token

    def __enter__(self) -> RJEPAClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self.http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise RJEPAError(r.status_code, detail)
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def metrics(self) -> str:
        return self._call("GET", "/metrics")

    def reload(self) -> dict[str, Any]:
        headers = {"X-Admin-Token": self.admin_token} if self.admin_token else {}
        return self._call("POST", "/admin/reload", headers=headers)

    def score(
        self,
        latents: Any = None,
        domains: str | Sequence[str | None] | None = None,
        questions: Any = None,
        *,
        question: str | None = None,
        chain: str | Sequence[str] | None = None,
        chains: Sequence[tuple[str, str | Sequence[str]]] | None = None,
    ) -> list[dict[str, Any]]:
        """Score one chain (2-D) or a batch; returns one {jepa_loss, step_surprise, score01, ...} per chain.

        questions: the chains' question latents (LatentSequence.Q / Extracted.q), one (hidden,) vector or
        None per chain (a bare vector for a single chain).

        As text instead of latents (the service's student extracts them): `question=` the problem and
        `chain=` its chain of thought, a string (cut into steps by the service) or a list of step texts;
        or `chains=[(question, chain), ...]` for a batch. `domains` applies to text too.
        """
        if chains is not None or question is not None or chain is not None:
            return self._score_text(latents, domains, questions, question, chain, chains)
        if latents is None:
            raise ValueError("give `latents`, or a chain as text (`question=` and `chain=`, or `chains=`)")
        chains, single = _batch(latents)
        if domains is None or isinstance(domains, str):
            domains = [domains] * len(chains)
        if len(domains) != len(chains):
            raise ValueError(f"{len(chains)} chains but {len(domains)} domains")
        if questions is None:
            questions = [None] * len(chains)
        elif single and _is_vector(questions):
            questions = [questions]
        if len(questions) != len(chains):
            raise ValueError(f"{len(chains)} chains but {len(questions)} question latents")
        seqs = []
        for h, d, q in zip(chains, domains, questions, strict=True):
            seq = {"latents": h, "domain": d}
            if q is not None:
                seq["question_latent"] = _vector(q)
            seqs.append(seq)
        body = {"sequences": seqs}
        return self._call("POST", "/score", json=body)["results"]

    def _score_text(self, latents, domains, questions, question, chain, chains) -> list[dict[str, Any]]:
        if latents is not None or questions is not None:
            raise ValueError("give latents or text, not both (question latents go with `latents`)")
        if chains is None:
            if question is None or chain is None:
                raise ValueError("a chain as text needs both `question=` and `chain=`")
            chains = [(question, chain)]
        elif question is not None or chain is not None:
            raise ValueError("give `question=` and `chain=` (one chain) or `chains=` (a batch), not both")
        if domains is None or isinstance(domains, str):
            domains = [domains] * len(chains)
        if len(domains) != len(chains):
            raise ValueError(f"{len(chains)} chains but {len(domains)} domains")
        body = []
        for (q, c), d in zip(chains, domains, strict=True):
            item: dict[str, Any] = {"question": q, "domain": d}
            if isinstance(c, str):
                item["text"] = c
            else:
                item["steps"] = [str(x) for x in c]
            body.append(item)
        return self._call("POST", "/score", json={"chains": body})["results"]

    def predict_masked(
        self, latents: Any, indices: Sequence[int], domain: str | None = None, question: Any = None
    ) -> dict[str, Any]:
        """Predictions (JEPA space and student hidden space) for the steps `indices` of one chain."""
        body = {"latents": _matrix(latents), "indices": [int(i) for i in indices], "domain": domain}
        if question is not None:
            body["question_latent"] = _vector(question)
        out = self._call("POST", "/predict_masked", json=body)
        out["pred_jepa"] = np.asarray(out["pred_jepa"], dtype=np.float32)
        out["pred_hidden"] = np.asarray(out["pred_hidden"], dtype=np.float32)
        return out

    def rerank(
        self,
        prompt: str,
        candidates: Sequence[str] | None = None,
        k: int | None = None,
        weights: dict[str, float] | None = None,
        selection: str = "composite",
        **generation: Any,
    ) -> dict[str, Any]:
        """Rank given candidate texts, or K chains sampled by the student (temperature, max_new_tokens, seed).

        selection: "composite", "jepa_vote", "jepa_filter_majority", "jepa_last_filter_majority" or
            "jepa_excess_filter_majority" (the chosen chain comes first).
        """
        body: dict[str, Any] = {"prompt": prompt, "selection": selection, **generation}
        if candidates is not None:
            body["candidates"] = list(candidates)
        if k is not None:
            body["k"] = k
        if weights is not None:
            body["weights"] = weights
        return self._call("POST", "/rerank", json=body)

    def chat(self, prompt: str, mode: str = "OFF", k: int = 4, temperature: float = 0.7, **kw: Any) -> dict[str, Any]:
        """Answer a problem. mode NUDGE takes `nudge={"threshold": .., "m": .., "alpha": .., "budget_tokens": ..}`,
        PLAN takes `plan={"steps": [...], "k": .., "verbalise": "decoder" | "student"}` (all optional)."""
        return self._call(
            "POST", "/chat", json={"prompt": prompt, "mode": mode, "k": k, "temperature": temperature, **kw}
        )

    def decode(self, latents: Any, max_tokens: int | None = None) -> list[str]:
        """The latent decoder's text for each step latent (rows of a (n, hidden) array, e.g. pred_hidden)."""
        body: dict[str, Any] = {"latents": _matrix(latents)}
        if max_tokens is not None:
            body["max_tokens"] = int(max_tokens)
        return self._call("POST", "/decode", json=body)["texts"]

    def feedback(
        self,
        rating: str,
        interaction_id: str | None = None,
        consent: bool = False,
        user_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Thumbs "up"/"down"; pass the interaction_id from chat() (or prompt=/answer=/steps= fields)."""
        body = {"rating": rating, "interaction_id": interaction_id, "consent": consent, "user_id": user_id, **fields}
        return self._call("POST", "/feedback", json=body)

    def delete_user(self, user_id: str) -> int:
        """Remove a user's interactions everywhere; returns how many records were removed."""
        return self._call("DELETE", f"/feedback/user/{quote(user_id, safe='')}")["removed"]
