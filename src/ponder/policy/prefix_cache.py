"""A prefix cache of attention keys and values, so that continuing a sequence does not re-encode it.

Step-level tree search calls the policy again and again on `prompt + steps so far`, a prefix that an
earlier call already ran through the model. `PrefixCache` keeps, per token-id sequence (BOS
included), the keys and values of every layer for every token of that sequence, and answers "what is
the longest stored prefix of these ids". Entries are indexed by a trie over token ids whose nodes know
which entries pass through them, so an entry for a long sequence also serves every prefix of it, a
lookup costs one dict step per matched token, and storing a sequence that extends an entry replaces
that entry instead of keeping both. Entries are evicted least recently used first, so the stored
bytes never exceed `max_bytes`.

Keys and values are stored as given, shaped (n_layer, n_head, length, head_dim) each: the layout one
row of `KVCache` uses. They are only valid for the weights that produced them: the owner must call
`clear()` whenever the weights change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor


class _Node:
    """A trie node: its children by next token id, the entries whose sequence passes through it (or
    ends at it), and the entry that ends exactly here, if any."""

    __slots__ = ("children", "end", "through")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.through: set[int] = set()
        self.end: int | None = None


class _Entry:
    __slots__ = ("ids", "k", "nbytes", "v")

    def __init__(self, ids: tuple[int, ...], k: Tensor, v: Tensor) -> None:
        self.ids, self.k, self.v = ids, k, v
        self.nbytes = k.numel() * k.element_size() + v.numel() * v.element_size()


class PrefixCache:
    """Per-token keys and values of token-id sequences, looked up by longest prefix, LRU-evicted.

    Counters: `hits` and `misses` (lookups that found at least one token, or none), `tokens_reused`
    (tokens served by lookups), `evictions`, and `bytes` (the memory the stored tensors take now,
    never above `max_bytes`).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._root = _Node()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # least recently used first
        self._next_id = 0
        self.bytes = 0
        self.hits = self.misses = self.tokens_reused = self.evictions = 0

    def __len__(self) -> int:
        """Number of stored entries (each covers its own sequence and all of its prefixes)."""
        return len(self._entries)

    def _walk(self, ids: Sequence[int]) -> tuple[int, _Node]:
        """How many leading tokens of ids the trie holds, and the node reached."""
        node, n = self._root, 0
        for t in ids:
            child = node.children.get(t)
            if child is None:
                break
            node, n = child, n + 1
        return n, node

    def _use(self, node: _Node) -> _Entry:
        """An entry passing through node (the one ending there if any), marked most recently used."""
        eid = node.end if node.end is not None else next(iter(node.through))
        self._entries.move_to_end(eid)
        return self._entries[eid]

    def lookup(self, ids: Sequence[int]) -> tuple[int, Tensor | None, Tensor | None]:
        """The longest stored prefix of `ids`: (n, k, v) with k and v (n_layer, n_head, n, head_dim)
        views of the stored tensors (do not modify them), or (0, None, None) when nothing matches."""
        n, node = self._walk(ids)
        if n == 0:
            self.misses += 1
            return 0, None, None
        entry = self._use(node)
        self.hits += 1
        self.tokens_reused += n
        return n, entry.k[:, :, :n], entry.v[:, :, :n]

    def covers(self, ids: Sequence[int]) -> bool:
        """Whether `ids` is stored (as an entry or a prefix of one); a covered sequence is marked
        recently used. Counters do not change. Lets a caller skip building tensors `insert` would drop."""
        n, node = self._walk(ids)
        if n < len(ids) or n == 0:
            return False
        self._use(node)
        return True

    def insert(self, ids: Sequence[int], k: Tensor, v: Tensor) -> bool:
        """Store the keys and values (n_layer, n_head, len(ids), head_dim) of `ids`; keeps references to
        k and v, so pass tensors nobody modifies later. Returns whether a new entry was stored: not when
        `ids` is already covered by an entry (which is then marked recently used) or when it alone
        exceeds `max_bytes`. Entries that are prefixes of `ids` are dropped, since the new one serves them.
        """
        ids = tuple(int(t) for t in ids)
        if k.shape != v.shape or k.dim() != 4 or k.shape[2] != len(ids):
            raise ValueError(f"k and v must both be (n_layer, n_head, {len(ids)}, head_dim), "
                             f"got {tuple(k.shape)} and {tuple(v.shape)}")
        if not ids or self.covers(ids):
            return False
        entry = _Entry(ids, k, v)
        if entry.nbytes > self.max_bytes:
            return False
        # add the path first, so removing the entries below never prunes nodes the new one needs
        eid, self._next_id = self._next_id, self._next_id + 1
        node, superseded = self._root, []
        node.through.add(eid)
        for t in ids:
            child = node.children.get(t)
            if child is None:
                child = node.children[t] = _Node()
            elif child.end is not None:
                superseded.append(child.end)  # an entry that is a prefix of ids: the new one serves it
            node = child
            node.through.add(eid)
        node.end = eid
        for old in superseded:
            self._remove(old)
        while self.bytes + entry.nbytes > self.max_bytes:
            self._remove(next(iter(self._entries)))  # least recently used; never the new entry, not listed yet
            self.evictions += 1
        self._entries[eid] = entry
        self.bytes += entry.nbytes
        return True

    def _remove(self, eid: int) -> None:
        entry = self._entries.pop(eid)
        self.bytes -= entry.nbytes
        node = self._root
        node.through.discard(eid)
        for t in entry.ids:
            child = node.children[t]
            child.through.discard(eid)
            if not child.through:  # nothing else passes here, so nothing below either: drop the subtree
                del node.children[t]
                return
            node = child
        if node.end == eid:
            node.end = None

    def clear(self) -> None:
        """Drop every entry (counters other than `bytes` are kept)."""
        self._root = _Node()
        self._entries.clear()
        self.bytes = 0

    def stats(self) -> dict[str, int]:
        """The counters as a dict."""
        return {"entries": len(self), "bytes": self.bytes, "hits": self.hits, "misses": self.misses,
                "tokens_reused": self.tokens_reused, "evictions": self.evictions}
