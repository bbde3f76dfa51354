"""Episodes on disk: :class:`Episode`, :class:`EpisodeStore`, :class:`RecordEpisodes` and importers.

An :class:`Episode` holds one episode's observations (or rendered frames) ``(T, ...)`` and, when
known, its actions, rewards, return, label, per-step info values and free-form metadata.

**Step convention.** ``observations[t]`` is the observation that *starts* step ``t``: the agent saw
it, took ``actions[t]`` and received ``rewards[t]``. An episode of ``T`` steps therefore has ``T``
observations and ``T`` actions; the observation returned with the last step (the terminal or
truncated state) is kept separately in :attr:`Episode.final_observation` when it is known. Video
datasets, which have frames only, use the same layout with ``actions=None, rewards=None``.

An :class:`EpisodeStore` is a folder::

    store.json          store-level metadata, written atomically
    manifest.jsonl      one JSON line per episode (id, file, length, return, label), append-only
    episodes/ep-000000.npz, ep-000001.npz, ...   one compressed file per episode, never rewritten

Each episode file is written to a temporary name in ``episodes/``, flushed and fsynced, then renamed
into place, and only then listed in the manifest, so a crash loses at most the episode being written.
Files are plain ``numpy.savez_compressed`` archives read with ``allow_pickle=False``; metadata is
stored as a JSON string inside the archive. :meth:`EpisodeStore.repair` rebuilds the manifest from
the episode files after a crash and removes temporary files left behind.

Example:
    >>> import tempfile, numpy as np
    >>> from critwrap.episodes import Episode, EpisodeStore
    >>> store = EpisodeStore(tempfile.mkdtemp() + "/eps")
    >>> ep = Episode(np.zeros((3, 4), np.float32), actions=np.array([0, 1, 0]), rewards=[0.0, 0.0, 1.0])
    >>> store.append(ep)
    'ep-000000'
    >>> len(store), store[0].episode_return, store.summary().total_steps
    (1, 1.0, 3)

Recording an environment (observations, or ``record="frames"`` for ``env.render()`` images)::

    >>> import critwrap
    >>> root = tempfile.mkdtemp()
    >>> env = critwrap.make("CartPole-v1", wrappers=[("record-episodes", {"store": root})])
    >>> obs, info = env.reset(seed=0)
    >>> done = False
    >>> while not done:
    ...     obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    ...     done = terminated or truncated
    >>> len(EpisodeStore(root)), EpisodeStore(root)[0].metadata["seed"]
    (1, 0)

Importers: :func:`read_video_folder` / :func:`import_video_folder` for folders of per-episode
``.gif`` / ``.mp4`` / ``.npy`` files (the Deep State Identifier datasets' layout), and
:func:`read_minari` for Minari datasets already on disk.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import gymnasium as gym
import numpy as np

from critwrap.wrappers.base import CritwrapWrapper, IncompatibleSpaceError

try:  # POSIX advisory locks; without them (Windows) concurrent writers are not serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CorruptEpisodeError",
    "Episode",
    "EpisodeStore",
    "ManifestEntry",
    "RecordEpisodes",
    "RepairReport",
    "StoreSummary",
    "import_video_folder",
    "read_minari",
    "read_video_folder",
]

STORE_FORMAT = "critwrap.EpisodeStore"
STORE_VERSION = 1
EPISODE_FORMAT_VERSION = 1

_DICT_OBS_HINT = (
    "Dict and Tuple observations are not supported by critwrap episodes: flatten them first "
    "(gymnasium.wrappers.FlattenObservation), keep one key (e.g. the 'minigrid-image' wrapper for MiniGrid), "
    "or record rendered frames instead (RecordEpisodes(record='frames'))."
)


# --------------------------------------------------------------------------------------------------
# Episode
# --------------------------------------------------------------------------------------------------


@dataclass
class Episode:
    """One episode: observations or rendered frames (T, ...), and what else is known about it.

    Attributes:
        observations: array (T, ...): observations or rendered RGB frames; ``observations[t]`` is the one
            that starts step ``t`` (see the module docstring).
        actions: optional array (T, ...) of the action taken at each step.
        rewards: optional float array (T,) of the reward received after each step.
        episode_return: the episode-level return; defaults to ``rewards.sum()`` when rewards are given.
        label: optional integer label (e.g. 1 success / 0 failure).
        infos: per-step arrays of recorded ``info`` keys, each (T, ...).
        metadata: free-form JSON-able dict (env id, seed, ground-truth critical steps, ...).
        final_observation: optional observation returned with the last step (the state the episode ended
            in), same shape as one entry of ``observations``.
    """

    observations: np.ndarray
    actions: np.ndarray | None = None
    rewards: np.ndarray | None = None
    episode_return: float | None = None
    label: int | None = None
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    final_observation: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.observations, dict) or (
            isinstance(self.observations, list | tuple)
            and self.observations
            and isinstance(self.observations[0], dict)
        ):
            raise TypeError(f"Episode got dict observations. {_DICT_OBS_HINT}")
        self.observations = np.asarray(self.observations)
        if self.observations.ndim < 1 or len(self.observations) == 0:
            raise ValueError(
                f"an episode needs at least one observation, got shape {self.observations.shape}"
            )
        T = len(self.observations)
        if self.actions is not None:
            self.actions = np.asarray(self.actions)
            if self.actions.ndim < 1 or len(self.actions) != T:
                raise ValueError(f"actions has shape {self.actions.shape} but observations has length {T}")
        if self.rewards is not None:
            self.rewards = np.asarray(self.rewards, dtype=np.float64)
            if self.rewards.shape != (T,):
                raise ValueError(f"rewards must have shape ({T},), got {self.rewards.shape}")
            if self.episode_return is None:
                self.episode_return = float(self.rewards.sum())
        if self.episode_return is not None:
            self.episode_return = float(self.episode_return)
        if self.label is not None:
            self.label = int(self.label)
        for key, value in list(self.infos.items()):
            arr = np.asarray(value)
            if arr.ndim < 1 or len(arr) != T:
                raise ValueError(f"info {key!r} has shape {arr.shape} but observations has length {T}")
            self.infos[key] = arr
        if self.final_observation is not None:
            self.final_observation = np.asarray(self.final_observation)
            if self.final_observation.shape != self.observations.shape[1:]:
                raise ValueError(
                    f"final_observation has shape {self.final_observation.shape}, expected one observation of "
                    f"shape {self.observations.shape[1:]}"
                )

    @property
    def frames(self) -> np.ndarray:
        """Alias of :attr:`observations` (recorded videos call them frames)."""
        return self.observations

    def __len__(self) -> int:
        return len(self.observations)


class CorruptEpisodeError(ValueError):
    """An episode file is missing, truncated or damaged. Other episodes of the store are unaffected."""


# --------------------------------------------------------------------------------------------------
# Serialisation of one episode
# --------------------------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("a numpy array of dtype object")
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"an object of type {type(obj).__name__}")


def _to_json(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must be JSON-serialisable (str, numbers, bools, None, lists, dicts, numpy scalars/arrays), "
            f"but it contains {exc}. Convert that value before storing the episode."
        ) from exc


def _check_storable(name: str, arr: np.ndarray) -> None:
    if arr.dtype.hasobject:
        raise TypeError(
            f"{name} has dtype object (shape {arr.shape}); episode files store numeric, bool and string "
            f"arrays only, never pickled objects. {_DICT_OBS_HINT}"
        )


def _episode_payload(ep: Episode) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {"observations": ep.observations}
    if ep.actions is not None:
        arrays["actions"] = ep.actions
    if ep.rewards is not None:
        arrays["rewards"] = ep.rewards
    if ep.final_observation is not None:
        arrays["final_observation"] = ep.final_observation
    info_names: dict[str, str] = {}
    for i, (key, value) in enumerate(ep.infos.items()):
        member = f"info_{i:03d}"
        info_names[member] = str(key)
        arrays[member] = value
    for name, arr in arrays.items():
        _check_storable(info_names.get(name, name), arr)
    meta = {
        "format_version": EPISODE_FORMAT_VERSION,
        "length": len(ep),
        "episode_return": ep.episode_return,
        "label": ep.label,
        "infos": info_names,
        "metadata": ep.metadata,
    }
    arrays["__meta__"] = np.array(_to_json(meta, "Episode.metadata"))
    return arrays


def _read_meta(z: Any) -> dict[str, Any]:
    meta = json.loads(str(z["__meta__"][()]))
    if not isinstance(meta, dict):
        raise ValueError("the __meta__ record is not a JSON object")
    version = int(meta.get("format_version", 0))
    if version > EPISODE_FORMAT_VERSION:
        raise ValueError(
            f"episode format version {version} is newer than this critwrap understands ({EPISODE_FORMAT_VERSION}); "
            "upgrade critwrap"
        )
    return meta


def _corrupt(path: Path, problem: str) -> CorruptEpisodeError:
    return CorruptEpisodeError(
        f"episode file {path} is unreadable ({problem}). Other episodes are not affected. Run "
        "EpisodeStore(root).repair() to move damaged files to corrupt/ and rebuild the manifest, or delete "
        "that file."
    )


def load_episode_file(path: str | os.PathLike[str]) -> Episode:
    """Read one episode file written by :class:`EpisodeStore` (no pickle is ever loaded).

    Raises:
        CorruptEpisodeError: the file is missing, truncated, not an episode file, or fails its checksums.
    """
    p = Path(path)
    if not p.is_file():
        raise _corrupt(p, "the file does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = _read_meta(z)
            members = set(z.files)
            if "observations" not in members:
                raise ValueError("it has no 'observations' array")
            observations = z["observations"]
            actions = z["actions"] if "actions" in members else None
            rewards = z["rewards"] if "rewards" in members else None
            final = z["final_observation"] if "final_observation" in members else None
            infos = {str(name): z[member] for member, name in dict(meta.get("infos", {})).items()}
        ep = Episode(
            observations=observations,
            actions=actions,
            rewards=rewards,
            episode_return=meta.get("episode_return"),
            label=meta.get("label"),
            infos=infos,
            metadata=dict(meta.get("metadata") or {}),
            final_observation=final,
        )
        length = meta.get("length")
        if length is not None and int(length) != len(ep):
            raise ValueError(f"it records length {length} but holds {len(ep)} observations")
        return ep
    except CorruptEpisodeError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, EOFError, KeyError, ValueError, OSError, ...
        raise _corrupt(p, f"{type(exc).__name__}: {exc}") from exc


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be fsynced on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# --------------------------------------------------------------------------------------------------
# EpisodeStore
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    """One line of ``manifest.jsonl``: where an episode is and what it is, without opening it."""

    id: str
    file: str
    length: int
    episode_return: float | None
    label: int | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "file": self.file,
                "length": self.length,
                "return": self.episode_return,
                "label": self.label,
            }
        )

    @classmethod
    def from_json(cls, line: str) -> ManifestEntry:
        d = json.loads(line)
        ret = d.get("return")
        label = d.get("label")
        return cls(
            id=str(d["id"]),
            file=str(d["file"]),
            length=int(d["length"]),
            episode_return=None if ret is None else float(ret),
            label=None if label is None else int(label),
        )


@dataclass
class StoreSummary:
    """Counts read from the manifest alone (no episode file is opened)."""

    count: int
    total_steps: int
    returns: np.ndarray  # float (count,), NaN where an episode has no return
    labels: dict[int, int]  # label -> number of episodes

    @property
    def mean_return(self) -> float:
        finite = self.returns[~np.isnan(self.returns)]
        return float(finite.mean()) if finite.size else math.nan

    def __str__(self) -> str:
        labels = ", ".join(f"{k}: {v}" for k, v in sorted(self.labels.items())) or "none"
        return f"{self.count} episodes, {self.total_steps} steps, mean return {self.mean_return:.4g}, labels {{{labels}}}"


@dataclass
class RepairReport:
    """What :meth:`EpisodeStore.repair` found and did."""

    episodes: int = 0
    recovered: list[str] = field(default_factory=list)  # files the manifest did not list, now listed
    dropped: list[str] = field(default_factory=list)  # manifest ids whose file was missing
    corrupt: list[str] = field(default_factory=list)  # damaged files, moved to corrupt/
    temp_removed: list[str] = field(default_factory=list)  # temporary files of dead writers, deleted
    damaged_lines: int = 0  # unreadable manifest lines (torn by a crash)

    @property
    def changed(self) -> bool:
        return bool(self.recovered or self.dropped or self.corrupt or self.temp_removed or self.damaged_lines)


_ID_RE = re.compile(r"^ep-(\d+)$")
_FILE_RE = re.compile(r"^(ep-\d+)\.npz$")
_TMP_RE = re.compile(r"^\.tmp-(\d+)-")


class EpisodeStore:
    """A folder of episodes, one compressed ``.npz`` file each, indexed by ``manifest.jsonl``.

    Args:
        root: the store's folder.
        create: create the folder and an empty store when it does not exist (else ``FileNotFoundError``).

    ``len(store)``, ``store.ids()``, ``store[i]``, ``store.get(id)`` and ``iter(store)`` follow the manifest,
    re-read incrementally on each call so that a reader sees episodes appended by other processes.
    Several processes may append to one store at once (POSIX file locks serialise the short rename and
    manifest steps; compression runs in parallel). See the module docstring for the layout.
    """

    def __init__(self, root: str | os.PathLike[str], create: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.episodes_dir = self.root / "episodes"
        self._manifest_path = self.root / "manifest.jsonl"
        self._store_json = self.root / "store.json"
        self._lock_path = self.root / ".lock"
        self._thread_lock = threading.RLock()
        if not self._store_json.is_file():
            if not create:
                raise FileNotFoundError(
                    f"no episode store at {self.root} (no store.json there); pass create=True to make one"
                )
            if self.root.exists() and not self.root.is_dir():
                raise NotADirectoryError(f"cannot make an episode store at {self.root}: it is a file")
            self.root.mkdir(parents=True, exist_ok=True)
            self.episodes_dir.mkdir(exist_ok=True)
            with self._locked():
                if not self._store_json.is_file():
                    self._write_store_json({})
        self.episodes_dir.mkdir(exist_ok=True)
        info = self._read_store_json()
        version = int(info.get("version", 0))
        if version > STORE_VERSION:
            raise ValueError(
                f"the episode store at {self.root} has format version {version}, newer than this critwrap "
                f"understands ({STORE_VERSION}); upgrade critwrap"
            )
        self._reset_cache()

    # -- store.json -------------------------------------------------------------------------------
    def _read_store_json(self) -> dict[str, Any]:
        try:
            data = json.loads(self._store_json.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{self._store_json} is unreadable ({exc}); it holds only store-level metadata: delete it and "
                "open the store again to recreate it"
            ) from exc
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
            raise ValueError(f"{self._store_json} is not a critwrap episode store description")
        return data

    def _write_store_json(self, metadata: dict[str, Any]) -> None:
        doc = {"format": STORE_FORMAT, "version": STORE_VERSION, "metadata": metadata}
        _write_atomic(self._store_json, (_to_json(doc, "store metadata") + "\n").encode())

    @property
    def metadata(self) -> dict[str, Any]:
        """Store-level metadata (a JSON dict); change it with :meth:`set_metadata`."""
        return dict(self._read_store_json().get("metadata") or {})

    def set_metadata(self, metadata: dict[str, Any], *, merge: bool = False) -> None:
        """Replace the store-level metadata (or update it with ``merge=True``); written atomically."""
        if not isinstance(metadata, dict):
            raise TypeError(f"store metadata must be a dict, got {type(metadata).__name__}")
        with self._locked():
            new = {**self.metadata, **metadata} if merge else dict(metadata)
            json.loads(_to_json(new, "store metadata"))  # fail before writing
            self._write_store_json(new)

    # -- locking ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            if fcntl is None:  # pragma: no cover - Windows
                yield
                return
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    # -- manifest -----------------------------------------------------------------------------------
    def _reset_cache(self) -> None:
        self._entries: list[ManifestEntry] = []
        self._by_id: dict[str, ManifestEntry] = {}
        self._m_offset = 0
        self._m_ino: int | None = None
        self._damaged = 0
        self._warned_damaged = 0
        self._max_index = -1

    def _refresh(self) -> None:
        with self._thread_lock:
            try:
                st = os.stat(self._manifest_path)
            except FileNotFoundError:
                if self._m_ino is not None or self._entries:
                    self._reset_cache()
                return
            if st.st_ino != self._m_ino or st.st_size < self._m_offset:
                self._reset_cache()
                self._m_ino = st.st_ino
            if st.st_size == self._m_offset:
                return
            with open(self._manifest_path, "rb") as f:
                f.seek(self._m_offset)
                data = f.read()
            end = data.rfind(b"\n")
            if end < 0:
                return  # only a partial (torn or in-progress) line: nothing complete yet
            self._m_offset += end + 1
            for raw in data[: end + 1].split(b"\n")[:-1]:
                if not raw.strip():
                    continue
                try:
                    entry = ManifestEntry.from_json(raw.decode())
                    match = _ID_RE.match(entry.id)
                    if match is None:
                        raise ValueError(f"bad id {entry.id!r}")
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    self._damaged += 1
                    continue
                if entry.id in self._by_id:
                    continue
                self._entries.append(entry)
                self._by_id[entry.id] = entry
                self._max_index = max(self._max_index, int(match.group(1)))
            if self._damaged > self._warned_damaged:
                self._warned_damaged = self._damaged
                warnings.warn(
                    f"{self._manifest_path} has {self._damaged} damaged line(s), most likely from a crash while "
                    "appending; they are skipped. EpisodeStore(root).repair() rebuilds the manifest from the "
                    "episode files.",
                    stacklevel=3,
                )

    def _append_manifest_line(self, line: str) -> None:
        payload = line.encode() + b"\n"
        fd = os.open(self._manifest_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size > 0:
                with open(self._manifest_path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":  # a torn last line: end it so that ours stays readable
                        payload = b"\n" + payload
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- writing ------------------------------------------------------------------------------------
    def append(self, episode: Episode) -> str:
        """Write ``episode`` to its own file and list it in the manifest; returns its id (``ep-000042``)."""
        if not isinstance(episode, Episode):
            raise TypeError(f"EpisodeStore.append takes an Episode, got {type(episode).__name__}")
        arrays = _episode_payload(episode)
        tmp = self.episodes_dir / f".tmp-{os.getpid()}-{secrets.token_hex(6)}.npz"
        try:
            with open(tmp, "xb") as f:
                self._savez(f, arrays)
                f.flush()
                os.fsync(f.fileno())
            with self._locked():
                self._refresh()
                index = self._max_index + 1
                while (
                    self.episodes_dir / f"ep-{index:06d}.npz"
                ).exists():  # unlisted files are never replaced
                    index += 1
                episode_id = f"ep-{index:06d}"
                final = self.episodes_dir / f"{episode_id}.npz"
                os.replace(tmp, final)
                _fsync_dir(self.episodes_dir)
                entry = ManifestEntry(
                    id=episode_id,
                    file=f"episodes/{final.name}",
                    length=len(episode),
                    episode_return=episode.episode_return,
                    label=episode.label,
                )
                self._append_manifest_line(entry.to_json())
                self._refresh()
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return episode_id

    @staticmethod
    def _savez(f: IO[bytes], arrays: dict[str, np.ndarray]) -> None:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]

    def extend(self, episodes: Sequence[Episode] | Iterator[Episode]) -> list[str]:
        """Append several episodes; returns their ids."""
        return [self.append(ep) for ep in episodes]

    # -- reading ------------------------------------------------------------------------------------
    def entries(self) -> list[ManifestEntry]:
        """The manifest entries, in append order."""
        self._refresh()
        return list(self._entries)

    def ids(self) -> list[str]:
        """Episode ids in append order."""
        self._refresh()
        return [e.id for e in self._entries]

    def __len__(self) -> int:
        self._refresh()
        return len(self._entries)

    def __contains__(self, episode_id: object) -> bool:
        self._refresh()
        return episode_id in self._by_id

    def path(self, episode_id: str) -> Path:
        """The file of episode ``episode_id``."""
        self._refresh()
        entry = self._by_id.get(episode_id)
        if entry is None:
            raise KeyError(self._missing_message(episode_id))
        return self.root / entry.file

    def _missing_message(self, episode_id: str) -> str:
        hint = ""
        if isinstance(episode_id, str) and _ID_RE.match(episode_id):
            if (self.episodes_dir / f"{episode_id}.npz").exists():
                hint = " Its file exists but the manifest does not list it: run store.repair() to list it."
        return f"no episode {episode_id!r} in the store at {self.root} ({len(self._entries)} episodes).{hint}"

    def get(self, episode_id: str) -> Episode:
        """Load episode ``episode_id``; raises ``KeyError`` if unknown, :class:`CorruptEpisodeError` if damaged."""
        return load_episode_file(self.path(episode_id))

    def __getitem__(self, index: int | slice) -> Any:
        self._refresh()
        if isinstance(index, slice):
            return [load_episode_file(self.root / e.file) for e in self._entries[index]]
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"index the store with an int or a slice (or use store.get(id)), got {index!r}")
        n = len(self._entries)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"episode index {i} out of range for a store of {n} episodes")
        return load_episode_file(self.root / self._entries[i].file)

    def __iter__(self) -> Iterator[Episode]:
        for entry in self.entries():
            yield load_episode_file(self.root / entry.file)

    def summary(self) -> StoreSummary:
        """Episode count, total steps, returns and label counts, from the manifest alone."""
        entries = self.entries()
        returns = np.array(
            [math.nan if e.episode_return is None else e.episode_return for e in entries], dtype=float
        )
        labels = Counter(e.label for e in entries if e.label is not None)
        return StoreSummary(len(entries), sum(e.length for e in entries), returns, dict(labels))

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.root)!r}, episodes={len(self)})"

    # -- repair -------------------------------------------------------------------------------------
    def repair(self, *, verify: bool = True, remove_all_temp: bool = False) -> RepairReport:
        """Rebuild the manifest from the episode files after a crash; returns a :class:`RepairReport`.

        - temporary files are deleted when the process that wrote them is gone (all of them with
          ``remove_all_temp=True``; use that only when no other process writes to the store);
        - every ``episodes/ep-*.npz`` is read (fully, checking checksums, with ``verify=True``; its
          metadata only otherwise); damaged files are moved to ``corrupt/``, never deleted;
        - the manifest is rewritten atomically, in id order, listing exactly the readable files.
        """
        report = RepairReport()
        with self._locked():
            listed: set[str] = set()
            if self._manifest_path.exists():
                for raw in self._manifest_path.read_bytes().split(b"\n"):
                    if not raw.strip():
                        continue
                    try:
                        listed.add(ManifestEntry.from_json(raw.decode()).id)
                    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                        report.damaged_lines += 1
            for tmp in sorted([*self.episodes_dir.iterdir(), *self.root.iterdir()]):
                match = _TMP_RE.match(tmp.name)
                if match is None or not tmp.is_file():
                    continue
                if remove_all_temp or not _pid_alive(int(match.group(1))):
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
                    report.temp_removed.append(tmp.name)
            files = []
            for p in self.episodes_dir.iterdir():
                m = _FILE_RE.match(p.name)
                if m is not None and p.is_file():
                    files.append((int(m.group(1)[3:]), m.group(1), p))
            files.sort()
            entries: list[ManifestEntry] = []
            for _, episode_id, p in files:
                try:
                    if verify:
                        ep = load_episode_file(p)
                        length, ret, label = len(ep), ep.episode_return, ep.label
                    else:
                        try:
                            with np.load(p, allow_pickle=False) as z:
                                meta = _read_meta(z)
                        except Exception as exc:
                            raise _corrupt(p, f"{type(exc).__name__}: {exc}") from exc
                        length, ret, label = (
                            int(meta["length"]),
                            meta.get("episode_return"),
                            meta.get("label"),
                        )
                except CorruptEpisodeError:
                    corrupt_dir = self.root / "corrupt"
                    corrupt_dir.mkdir(exist_ok=True)
                    target = corrupt_dir / p.name
                    while target.exists():
                        target = corrupt_dir / f"{p.stem}-{secrets.token_hex(3)}{p.suffix}"
                    os.replace(p, target)
                    report.corrupt.append(p.name)
                    continue
                entries.append(
                    ManifestEntry(
                        episode_id,
                        f"episodes/{p.name}",
                        length,
                        None if ret is None else float(ret),
                        None if label is None else int(label),
                    )
                )
                if episode_id not in listed:
                    report.recovered.append(episode_id)
            present = {e.id for e in entries}
            report.dropped = sorted((listed - present) - {f[1] for f in files if f[2].name in report.corrupt})
            report.episodes = len(entries)
            text = "".join(e.to_json() + "\n" for e in entries)
            _write_atomic(self._manifest_path, text.encode())
            _fsync_dir(self.episodes_dir)
            self._reset_cache()
            self._refresh()
        return report


# --------------------------------------------------------------------------------------------------
# RecordEpisodes wrapper
# --------------------------------------------------------------------------------------------------


def _check_recordable_space(space: gym.Space[Any], what: str) -> None:
    if isinstance(space, gym.spaces.Dict | gym.spaces.Tuple | gym.spaces.Sequence | gym.spaces.Graph):
        raise IncompatibleSpaceError(
            f"RecordEpisodes cannot record the {what} space {space}. {_DICT_OBS_HINT}"
        )


class RecordEpisodes(CritwrapWrapper, gym.Wrapper[Any, Any, Any, Any]):
    """Record each finished episode of the wrapped env into an :class:`EpisodeStore`.

    Per step it keeps the observation that starts the step (or the ``env.render()`` RGB frame of that
    state with ``record="frames"``), the action, the reward and the ``info`` values named in
    ``info_keys``; ``T`` observations for ``T`` actions, the last observation (or frame) going to
    :attr:`Episode.final_observation`. When the episode terminates or truncates it is appended to the
    store with metadata ``env_id``, ``seed`` (the seed given to ``reset``, else ``None``),
    ``terminated`` and ``truncated``. A ``reset`` in the middle of an episode discards it.

    Args:
        env: the environment.
        store: path of the store (created if needed). A path, not an object, so that ``env.spec`` stays
            JSON-able and ``gymnasium.make(env.spec)`` records into the same store.
        record: ``"observations"`` or ``"frames"`` (needs ``render_mode="rgb_array"``).
        info_keys: ``info`` keys to record per step (a missing key is an error).
        max_episodes: stop recording after this many episodes (the env keeps running).
        label_key: an ``info`` key of the last step whose value becomes :attr:`Episode.label` (e.g.
            ``"is_success"``); episodes whose last info lacks it get no label.

    Example:
        >>> import critwrap, tempfile
        >>> env = critwrap.make("MiniGrid-Empty-5x5-v0", render_mode="rgb_array",
        ...                     wrappers=[("record-episodes", {"store": tempfile.mkdtemp(), "record": "frames"})])
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        store: str,
        record: str = "observations",
        info_keys: Sequence[str] = (),
        max_episodes: int | None = None,
        label_key: str | None = None,
    ) -> None:
        store = os.fspath(store)
        CritwrapWrapper.__init__(
            self,
            store=store,
            record=record,
            info_keys=info_keys,
            max_episodes=max_episodes,
            label_key=label_key,
        )
        gym.Wrapper.__init__(self, env)
        if record not in ("observations", "frames"):
            raise ValueError(f"record must be 'observations' or 'frames', got {record!r}")
        if isinstance(info_keys, str):
            raise TypeError(
                f"info_keys must be a sequence of keys, got the string {info_keys!r}; write [{info_keys!r}]"
            )
        if max_episodes is not None and int(max_episodes) < 0:
            raise ValueError(f"max_episodes must be >= 0 or None, got {max_episodes}")
        if record == "frames":
            if env.render_mode != "rgb_array":
                raise ValueError(
                    f"RecordEpisodes(record='frames') needs an env made with render_mode='rgb_array', but its "
                    f"render_mode is {env.render_mode!r}; e.g. critwrap.make(env_id, render_mode='rgb_array', ...), "
                    "or in the zoo: --hp 'env_kwargs={render_mode: rgb_array}'"
                )
        else:
            _check_recordable_space(env.observation_space, "observation")
        _check_recordable_space(env.action_space, "action")
        self.store = EpisodeStore(store, create=True)
        self.record = record
        self.info_keys = tuple(str(k) for k in info_keys)
        self.max_episodes = None if max_episodes is None else int(max_episodes)
        self.label_key = label_key
        self.episodes_recorded = 0
        self.last_episode_id: str | None = None
        self._seed: int | None = None
        self._current: np.ndarray | None = None
        self._obs: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._rewards: list[float] = []
        self._infos: dict[str, list[Any]] = {}

    @property
    def recording(self) -> bool:
        return self.max_episodes is None or self.episodes_recorded < self.max_episodes

    def _snapshot(self, obs: Any) -> np.ndarray:
        if self.record == "frames":
            frame = self.env.render()
            if not isinstance(frame, np.ndarray) or frame.ndim != 3:
                raise ValueError(
                    f"RecordEpisodes(record='frames') expected env.render() to return an (H, W, C) array, got "
                    f"{type(frame).__name__} {getattr(frame, 'shape', '')}"
                )
            return np.array(frame, copy=True)
        return np.array(obs, copy=True)

    def _discard(self) -> None:
        self._current = None
        self._obs, self._actions, self._rewards = [], [], []
        self._infos = {k: [] for k in self.info_keys}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._discard()
        self._seed = seed
        if self.recording:
            self._current = self._snapshot(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._current is None:
            return obs, reward, terminated, truncated, info
        self._obs.append(self._current)
        self._actions.append(np.array(action, copy=True))
        self._rewards.append(float(reward))
        for key in self.info_keys:
            if key not in info:
                raise KeyError(
                    f"RecordEpisodes: info key {key!r} is missing at step {len(self._actions) - 1}; the info has "
                    f"keys {sorted(info)}. Record only keys every step provides."
                )
            self._infos[key].append(np.asarray(info[key]))
        self._current = self._snapshot(obs)
        if terminated or truncated:
            self._finish(bool(terminated), bool(truncated), info)
        return obs, reward, terminated, truncated, info

    def _finish(self, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        label = None
        if self.label_key is not None and info.get(self.label_key) is not None:
            label = int(info[self.label_key])
        spec = self.env.spec
        episode = Episode(
            observations=np.stack(self._obs),
            actions=np.stack(self._actions),
            rewards=np.asarray(self._rewards, dtype=np.float64),
            label=label,
            infos={k: np.stack(v) for k, v in self._infos.items()},
            metadata={
                "env_id": None if spec is None else spec.id,
                "seed": self._seed,
                "terminated": terminated,
                "truncated": truncated,
                "record": self.record,
                "recorder": "RecordEpisodes",
            },
            final_observation=self._current,
        )
        self._discard()
        self.last_episode_id = self.store.append(episode)
        self.episodes_recorded += 1

    def close(self) -> None:
        self._discard()
        super().close()


# --------------------------------------------------------------------------------------------------
# Importers: video folders (Deep State Identifier layout) and Minari
# --------------------------------------------------------------------------------------------------

VIDEO_EXTENSIONS = (".gif", ".mp4", ".avi", ".webm", ".mov")
_SPLITS = {"train", "test", "val", "valid", "validation"}
DSI_LABELS: dict[str, int] = {"positive": 1, "negative": 0}


@dataclass
class _VideoItem:
    folder: Path
    stem: str
    videos: list[Path]
    npy: Path | None
    returns: Path | None


def _natural_key(s: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


def _scan_video_folder(root: Path, recursive: bool) -> list[_VideoItem]:
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {root}: read_video_folder takes a folder of per-episode files")
    folders = [root]
    if recursive:
        folders += sorted(
            (p for p in root.rglob("*") if p.is_dir()), key=lambda p: _natural_key(str(p.relative_to(root)))
        )
    items: list[_VideoItem] = []
    for folder in folders:
        by_stem: dict[str, dict[str, list[Path]]] = {}
        for p in folder.iterdir():
            if p.is_file() and not p.name.startswith("."):
                ext = p.suffix.lower()
                if ext in VIDEO_EXTENSIONS or ext == ".npy":
                    by_stem.setdefault(p.stem, {}).setdefault(ext, []).append(p)
        for stem in sorted(by_stem, key=_natural_key):
            files = by_stem[stem]
            videos = [f for ext in VIDEO_EXTENSIONS for f in files.get(ext, [])]
            npy = files.get(".npy", [None])[0]
            if stem.endswith("_r") and not videos and stem[:-2] in by_stem:
                continue  # the return / rewards companion of another episode (Atari-Pong layout: 0.npy, 0_r.npy)
            companion = by_stem.get(f"{stem}_r", {}).get(".npy", [None])[0]
            items.append(_VideoItem(folder, stem, videos, npy, companion))
    return items


def _read_video(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        frames = np.asarray(iio.imread(path, index=...))  # type: ignore[arg-type]
    except Exception as exc:
        hint = " (.mp4 needs the imageio-ffmpeg package)" if path.suffix.lower() != ".gif" else ""
        raise ValueError(f"could not read the video {path}: {type(exc).__name__}: {exc}{hint}") from exc
    # index=... always stacks: (T, H, W, C), or (T, H, W) for grayscale
    if frames.ndim == 4 and frames.shape[-1] == 4 and (frames[..., 3] == 255).all():
        frames = frames[..., :3]  # opaque alpha channel
    return frames


def _load_video_item(item: _VideoItem, root: Path, labels: dict[str, int]) -> Episode | None:
    rel_folder = item.folder.relative_to(root)
    parts = rel_folder.parts
    group = item.folder.name if parts else None
    split = next((p for p in parts if p.lower() in _SPLITS), None)
    npy = None
    if item.npy is not None:
        try:
            npy = np.load(item.npy, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{item.npy} holds pickled objects, which critwrap never loads: {exc}") from exc
    frames: np.ndarray | None = None
    source: Path | None = None
    if npy is not None and npy.ndim == 4:
        frames, source = npy, item.npy
    elif item.videos:
        frames, source = _read_video(item.videos[0]), item.videos[0]
    elif npy is not None and npy.ndim >= 2:
        frames, source = npy, item.npy
    if frames is None or source is None:
        warnings.warn(
            f"skipping {item.folder / item.stem}: no frames (a 1-D .npy alone is not an episode)",
            stacklevel=3,
        )
        return None
    metadata: dict[str, Any] = {
        "source": source.relative_to(root).as_posix(),
        "group": group,
        "split": split,
        "stem": item.stem,
    }
    infos: dict[str, np.ndarray] = {}
    if npy is not None and source != item.npy:  # an .npy beside the video that is not its frames
        if npy.ndim >= 1 and len(npy) == len(frames):
            infos["npy"] = npy
        elif npy.size <= 10_000:
            metadata["npy"] = npy.tolist()
    episode_return: float | None = None
    rewards: np.ndarray | None = None
    if item.returns is not None:
        r = np.load(item.returns, allow_pickle=False)
        if r.size == 1:
            episode_return = float(r.reshape(()))
        elif r.ndim == 1 and len(r) == len(frames):
            rewards = r.astype(np.float64)
        else:
            metadata["returns_file"] = r.tolist() if r.size <= 10_000 else None
    return Episode(
        observations=frames,
        rewards=rewards,
        episode_return=episode_return,
        label=labels.get(item.folder.name) if parts else None,
        infos=infos,
        metadata=metadata,
    )


def read_video_folder(
    path: str | os.PathLike[str],
    *,
    labels: dict[str, int] | None = None,
    recursive: bool = True,
    max_episodes: int | None = None,
) -> Iterator[Episode]:
    """Read a folder of per-episode files as episodes, lazily (wrap in ``list()`` to load them all).

    The layout is the Deep State Identifier datasets' one: ``train/positive/0.gif``, ``0.npy``,
    ``train/negative/...``, ``test/...``. Each file stem in a folder is one episode:

    - frames come from the ``.npy`` when it is a ``(T, H, W, C)`` array, else from the video (``.gif``,
      ``.mp4``, read with ``imageio.v3``), else from an ``.npy`` of 2 or more dimensions (``(T, H, W)``
      grayscale or ``(T, D)`` vectors); an ``.npy`` beside a video that is not its frames goes to
      ``infos["npy"]`` (length T) or ``metadata["npy"]``;
    - ``<stem>_r.npy`` (Atari-Pong layout) gives the episode return (one value) or per-step rewards;
    - the label comes from the folder name: ``positive`` -> 1, ``negative`` -> 0 (``labels`` overrides);
      every episode keeps its folder name in ``metadata["group"]`` and ``train``/``test`` in
      ``metadata["split"]``; ``metadata["source"]`` is the file read, relative to ``path``.

    Files are visited in natural order (``2.gif`` before ``10.gif``).
    """
    root = Path(path).expanduser()
    label_map = DSI_LABELS if labels is None else dict(labels)
    n = 0
    for item in _scan_video_folder(root, recursive):
        if max_episodes is not None and n >= max_episodes:
            return
        ep = _load_video_item(item, root, label_map)
        if ep is not None:
            n += 1
            yield ep


def import_video_folder(
    path: str | os.PathLike[str],
    store_root: str | os.PathLike[str],
    *,
    labels: dict[str, int] | None = None,
    recursive: bool = True,
    max_episodes: int | None = None,
    progress: bool = True,
) -> EpisodeStore:
    """Read a video folder (see :func:`read_video_folder`) into an :class:`EpisodeStore`, with a progress bar."""
    from tqdm.auto import tqdm

    root = Path(path).expanduser()
    items = _scan_video_folder(root, recursive)
    if max_episodes is not None:
        items = items[:max_episodes]
    label_map = DSI_LABELS if labels is None else dict(labels)
    store = EpisodeStore(store_root, create=True)
    for item in tqdm(items, desc=f"importing {root.name}", unit="episode", disable=not progress):
        ep = _load_video_item(item, root, label_map)
        if ep is not None:
            store.append(ep)
    store.set_metadata({"imported_from": str(root), "importer": "video_folder"}, merge=True)
    return store


def read_minari(
    dataset: str | os.PathLike[str],
    *,
    info_keys: Sequence[str] = (),
    max_episodes: int | None = None,
) -> Iterator[Episode]:
    """Episodes of a Minari dataset already on disk; nothing is ever downloaded.

    Args:
        dataset: a dataset id (looked up under ``MINARI_DATASETS_PATH``, default ``~/.minari/datasets``)
            or the path of a dataset folder (the one holding ``data/``, or ``data/`` itself).
        info_keys: per-step info arrays to keep (Minari stores T+1 infos, the first from ``reset``;
            the T step infos are kept).
        max_episodes: stop after this many episodes.

    Minari's T+1 observations become ``observations`` (the first T) and ``final_observation``.
    """
    try:
        import minari
    except ImportError as exc:
        raise ImportError(
            "read_minari needs the minari package: pip install 'critwrap[minari]' (minari[hdf5])"
        ) from exc
    ref = os.fspath(dataset)
    p = Path(ref).expanduser()
    if p.is_dir():
        data_path = p / "data" if (p / "data").is_dir() else p
        ds = minari.MinariDataset(data_path)
    else:
        try:
            ds = minari.load_dataset(ref, download=False)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"the Minari dataset {ref!r} is not on disk ({exc}). critwrap never downloads: run "
                f"`minari download {ref}` yourself, set MINARI_DATASETS_PATH, or pass the dataset's folder."
            ) from exc
    spec = getattr(ds, "spec", None)
    dataset_id = getattr(spec, "dataset_id", None) or ref
    env_spec = getattr(spec, "env_spec", None)
    env_id = getattr(env_spec, "id", None)
    for n, ep in enumerate(ds.iterate_episodes()):
        if max_episodes is not None and n >= max_episodes:
            return
        obs = ep.observations
        if not isinstance(obs, np.ndarray):
            raise TypeError(
                f"Minari dataset {dataset_id!r} has {type(obs).__name__} observations. {_DICT_OBS_HINT}"
            )
        if isinstance(ep.actions, dict | tuple):
            raise TypeError(
                f"Minari dataset {dataset_id!r} has {type(ep.actions).__name__} actions, not supported"
            )
        T = len(ep.rewards)
        if len(obs) != T + 1:
            raise ValueError(
                f"Minari episode {ep.id}: expected {T + 1} observations for {T} steps, got {len(obs)}"
            )
        infos: dict[str, np.ndarray] = {}
        for key in info_keys:
            if key not in ep.infos:
                raise KeyError(
                    f"info key {key!r} not in the Minari episode {ep.id}; it has {sorted(ep.infos)}"
                )
            arr = np.asarray(ep.infos[key])
            infos[key] = arr[1:] if len(arr) == T + 1 else arr
        yield Episode(
            observations=obs[:T],
            actions=np.asarray(ep.actions),
            rewards=np.asarray(ep.rewards, dtype=np.float64),
            infos=infos,
            metadata={
                "minari_dataset": str(dataset_id),
                "minari_episode": int(ep.id),
                "env_id": env_id,
                "terminated": bool(np.asarray(ep.terminations)[-1]),
                "truncated": bool(np.asarray(ep.truncations)[-1]),
            },
            final_observation=obs[T],
        )
