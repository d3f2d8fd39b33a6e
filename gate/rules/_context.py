"""Everything the rules read, read once, with bounds, never following symlinks.

The context never raises for a bad file inside the adapter directory: it
records why the file could not be used, and the ``files.*`` rules report it.
Only problems with the base directory (which is the reference, not the input
under test) are :class:`~gate.errors.InputError`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gate.contract import Contract
from gate.errors import InputError
from gate.rules._inputs import (
    _MAX_ENTRIES,
    ADAPTER_CONFIG,
    LIMITS,
    PICKLE_WEIGHTS,
    PROBE_MARK,
    SERVED_FILES,
    TEMPLATE_FILE,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    WEIGHTS,
    JsonDoc,
    TemplateSource,
    _added_tokens_only,
    _base_shards,
    _parse_json,
    added_tokens,
    token_text,
    vocab_size,
)
from gate.safetensors_io import SafetensorsHeader, open_nofollow, read_header, scan_nonfinite
from gate.validation import file_kind

if TYPE_CHECKING:  # jinja2 is imported only when a template must be rendered
    from gate.templates import RenderResult

__all__ = [
    "ADAPTER_CONFIG",
    "LIMITS",
    "PICKLE_WEIGHTS",
    "PROBE_MARK",
    "SERVED_FILES",
    "TEMPLATE_FILE",
    "TOKENIZER_CONFIG",
    "TOKENIZER_JSON",
    "WEIGHTS",
    "CheckContext",
    "JsonDoc",
    "TemplateSource",
    "added_tokens",
    "token_text",
    "vocab_size",
]


class CheckContext:
    """Lazy, cached view of the adapter directory, the contract and (optionally) the base."""

    def __init__(self, adapter_dir: Path, contract: Contract, base_dir: Path | None = None) -> None:
        self.adapter_dir = adapter_dir
        self.contract = contract
        self.base_dir = base_dir
        self.entries: dict[str, os.stat_result] = {}
        #: Derived values rules share (computed by the first rule that needs them).
        self.memo: dict[str, Any] = {}
        with os.scandir(adapter_dir) as it:
            for i, entry in enumerate(it):
                if i >= _MAX_ENTRIES:
                    break
                self.entries[entry.name] = entry.stat(follow_symlinks=False)

    # --- the directory ----------------------------------------------------------------------------

    def is_file(self, name: str) -> bool:
        """A regular file (not a symlink) directly in the adapter directory."""
        st = self.entries.get(name)
        return st is not None and stat.S_ISREG(st.st_mode)

    def special_kind(self, name: str) -> str | None:
        """What ``name`` is when it is neither a regular file nor a symlink (a FIFO, a directory...)."""
        st = self.entries.get(name)
        if st is None or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            return None
        return file_kind(st.st_mode)

    def is_symlink(self, name: str) -> bool:
        """A symlink directly in the adapter directory (gate never follows it)."""
        st = self.entries.get(name)
        return st is not None and stat.S_ISLNK(st.st_mode)

    @cached_property
    def tree(self) -> tuple[int, int, list[tuple[str, str]]]:
        """(bytes of regular files, number of entries, [(symlink, target)]); symlinks are not followed."""
        total, count = 0, 0
        links: list[tuple[str, str]] = []
        for root, dirs, files in os.walk(self.adapter_dir, followlinks=False):
            for name in dirs + files:
                count += 1
                if count > _MAX_ENTRIES:
                    return total, count, links
                p = Path(root, name)
                try:
                    st = p.lstat()
                    if stat.S_ISLNK(st.st_mode):
                        links.append((str(p.relative_to(self.adapter_dir)), os.readlink(p)))
                    elif stat.S_ISREG(st.st_mode):
                        total += st.st_size
                except OSError:  # removed while walking: nothing to count
                    continue
        return total, count, links

    @cached_property
    def oversize(self) -> bool:
        """The directory failed a size rule: nothing more of it is read in bulk (NaN scan, digests)."""
        total, count, _ = self.tree
        return count > _MAX_ENTRIES or total > self.contract.adapter.max_size_bytes

    def _read_bytes(self, name: str) -> tuple[bytes | None, str | None]:
        st = self.entries.get(name)
        if st is None or stat.S_ISLNK(st.st_mode):
            return None, None
        if not stat.S_ISREG(st.st_mode):
            return None, "is not a regular file"
        limit = LIMITS.get(name, 1 << 20)
        if st.st_size > limit:
            return None, f"is {st.st_size} bytes, more than the {limit}-byte limit for this file"
        try:
            with open_nofollow(self.adapter_dir / name) as fh:
                return fh.read(limit + 1)[:limit], None
        except InputError as e:
            return None, e.message

    def json_file(self, name: str) -> JsonDoc:
        """A JSON object file of the adapter directory, bounded and validated; read once."""
        key = f"json:{name}"
        if key not in self.memo:
            data, error = self._read_bytes(name)
            self.memo[key] = _parse_json(data, error)
        doc: JsonDoc = self.memo[key]
        return doc

    @property
    def config(self) -> JsonDoc:
        """adapter_config.json."""
        return self.json_file(ADAPTER_CONFIG)

    # --- weights ----------------------------------------------------------------------------------

    @cached_property
    def header(self) -> tuple[SafetensorsHeader | None, str | None]:
        """The adapter's safetensors header, or why it cannot be read (absent: both None)."""
        if not self.is_file(WEIGHTS):
            return None, None
        try:
            return read_header(self.adapter_dir / WEIGHTS), None
        except InputError as e:
            return None, e.message.removeprefix(f"{self.adapter_dir / WEIGHTS}: ")

    def nonfinite(self, names: frozenset[str]) -> dict[str, int]:
        """NaN/Inf count of the tensors ``names`` (one streamed pass; empty when unreadable or oversize).

        Only the tensors vLLM would load are named: a tensor it refuses or skips fails the
        gate by another rule, and 100,000 tiny decoys must not cost 100,000 reads.
        """
        header, _ = self.header
        if header is None or self.oversize or not names:
            return {}
        key = f"nonfinite:{hash(names)}"
        if key not in self.memo:
            try:
                self.memo[key] = scan_nonfinite(header.path, header, only=names)
            except InputError:
                self.memo[key] = {}
        counts: dict[str, int] = self.memo[key]
        return counts

    # --- the base ---------------------------------------------------------------------------------

    @cached_property
    def served_embeddings(self) -> frozenset[str]:
        """embed_tokens / lm_head where the contract's vLLM versions serve them as LoRA for this base."""
        from gate.vllm_support import served_embedding_modules

        return served_embedding_modules(self.contract)

    @cached_property
    def base_linears(self) -> dict[str, tuple[int, int]]:
        """Full module name -> (out_features, in_features) of every module vLLM serves LoRA on.

        Read from the base's safetensors headers when a base directory is given, else built
        from the contract's ``linear_shapes`` and ``module_paths``. ``embed_tokens`` / ``lm_head``
        count only where the runtime serves them for this architecture (:attr:`served_embeddings`).
        """
        from gate.vllm_support import EMBEDDING_MODULES

        spec = self.contract.base_model
        lm_head = "lm_head" in self.served_embeddings
        out: dict[str, tuple[int, int]] = {}
        if self.base_dir is None:
            for module, shape in spec.linear_shapes.items():
                if module in EMBEDDING_MODULES:
                    continue
                for layer in range(spec.num_hidden_layers):
                    out[spec.module_path(module, layer)] = shape
            if lm_head:
                shape = spec.linear_shapes.get("lm_head", (spec.vocab_size, spec.hidden_size))
                out[spec.module_paths.get("lm_head", "lm_head")] = shape
            return out
        head: dict[str, tuple[int, int]] = {}
        for shard in _base_shards(self.base_dir):
            for name, info in read_header(shard).tensors.items():
                if name.endswith(".weight") and len(info.shape) == 2:
                    module = name.removesuffix(".weight")
                    if module.split(".")[-1] not in EMBEDDING_MODULES:
                        out[module] = (info.shape[0], info.shape[1])
                    elif module.split(".")[-1] == "lm_head":
                        head[module] = (info.shape[0], info.shape[1])
        if not out:
            raise InputError(f"{self.base_dir}: the base has no linear layers in its safetensors files")
        if lm_head:  # a tied lm_head has no tensor of its own: vLLM shares embed_tokens' [vocab, hidden]
            out.update(head or {"lm_head": (spec.vocab_size, spec.hidden_size)})
        return out

    @cached_property
    def base_linear_names(self) -> set[str]:
        """Short names (q_proj, ...) of the base's LoRA-able modules (lm_head where it is served)."""
        return {m.split(".")[-1] for m in self.base_linears}

    def base_json(self, name: str) -> JsonDoc:
        """A JSON file of the base directory (absent when no base is given); read once."""
        key = f"base:{name}"
        if key not in self.memo:
            self.memo[key] = self._read_base_json(name)
        doc: JsonDoc = self.memo[key]
        return doc

    def same_as_base(self, name: str) -> bool:
        """The adapter's file has exactly the bytes of the base's (cheap: size first, then bytes).

        Without a base directory, tokenizer.json is compared with the contract's
        ``base_model.tokenizer_sha256``.
        """
        pinned = self.contract.base_model.tokenizer_sha256
        if self.base_dir is None and name == TOKENIZER_JSON and pinned and self.is_file(name):
            if "tokenizer_sha256" not in self.memo:
                data, _ = self._read_bytes(name)
                self.memo["tokenizer_sha256"] = hashlib.sha256(data).hexdigest() if data is not None else None
            return bool(self.memo["tokenizer_sha256"] == pinned)
        if self.base_dir is None or not self.is_file(name) or not (self.base_dir / name).is_file():
            return False
        if self.entries[name].st_size != (self.base_dir / name).stat().st_size:
            return False
        mine, _ = self._read_bytes(name)
        try:
            with open_nofollow(self.base_dir / name) as fh:
                return mine == fh.read(len(mine or b"") + 1)
        except InputError:
            return False

    def _read_base_json(self, name: str) -> JsonDoc:
        if self.base_dir is None or not (self.base_dir / name).is_file():
            return JsonDoc()
        try:
            with open_nofollow(self.base_dir / name) as fh:
                data = fh.read(LIMITS.get(name, 64 << 20) + 1)
        except InputError:
            return JsonDoc(error="unreadable")
        doc = _parse_json(data, None)
        if doc.error:
            raise InputError(f"{self.base_dir / name}: {doc.error}")
        return doc

    @cached_property
    def special_token_ids(self) -> dict[str, int]:
        """Added/special token text -> id, from the base tokenizer (what vLLM uses), else the adapter's.

        The base's tokenizer.json (or an adapter copy with the contract's pinned digest) is
        trusted, so only its ``added_tokens`` array is decoded instead of the whole 3.5 MB file.
        """
        trusted: Path | None = None
        if self.base_dir is not None and (self.base_dir / TOKENIZER_JSON).is_file():
            trusted = self.base_dir / TOKENIZER_JSON
        elif self.same_as_base(TOKENIZER_JSON):
            trusted = self.adapter_dir / TOKENIZER_JSON
        if trusted is not None:
            try:
                with open_nofollow(trusted) as fh:
                    fast = _added_tokens_only(fh.read(LIMITS[TOKENIZER_JSON] + 1))
            except InputError:
                fast = None
            if fast is not None:
                return fast
        for doc in (self.base_json(TOKENIZER_JSON), self.json_file(TOKENIZER_JSON)):
            if doc.data is not None:
                return added_tokens(doc.data)
        return {}

    # --- the chat template ------------------------------------------------------------------------

    @cached_property
    def template(self) -> tuple[TemplateSource | None, str | None]:
        """The adapter's chat template (chat_template.jinja, else tokenizer_config.json), or an error."""
        if TEMPLATE_FILE in self.entries:
            data, error = self._read_bytes(TEMPLATE_FILE)
            if error:
                return None, f"{TEMPLATE_FILE} {error}"
            if data is None:
                return None, None
            try:
                return TemplateSource(data.decode("utf-8"), TEMPLATE_FILE), None
            except UnicodeDecodeError:
                return None, f"{TEMPLATE_FILE} is not UTF-8 text"
        doc = self.json_file(TOKENIZER_CONFIG)
        value = doc.data.get("chat_template") if doc.data else None
        if isinstance(value, list):  # named templates: the server uses "default"
            named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
            value = named.get("default")
        if isinstance(value, str) and value:
            return TemplateSource(value, f"{TOKENIZER_CONFIG}#chat_template"), None
        return None, None

    @cached_property
    def template_differs(self) -> bool:
        """The adapter ships a template whose bytes differ from the contract's serving template."""
        source, _ = self.template
        if source is None:
            return False
        return hashlib.sha256(source.text.encode()).hexdigest() != self.contract.prompt.chat_template_sha256

    @cached_property
    def renders(self) -> list[RenderResult]:
        """The adapter template rendered (sandboxed) for every fixture, then the end-of-turn probe."""
        source, _ = self.template
        if source is None or not self.template_differs:
            return []
        from gate.templates import RenderCase, render_many

        variables = self._template_variables()
        cases = [
            RenderCase(
                messages=[m.model_dump() for m in f.messages],
                add_generation_prompt=f.add_generation_prompt,
                variables=variables,
            )
            for f in self.contract.prompt.fixtures
        ]
        probe = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": PROBE_MARK}]
        cases.append(RenderCase(messages=probe, add_generation_prompt=False, variables=variables))
        return render_many(source.text, cases)

    def _template_variables(self) -> dict[str, Any]:
        variables: dict[str, Any] = {}
        for doc in (self.base_json(TOKENIZER_CONFIG), self.json_file(TOKENIZER_CONFIG)):
            for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
                value = token_text(doc.data.get(key)) if doc.data else None
                if value is not None:
                    variables[key] = value
        return variables
