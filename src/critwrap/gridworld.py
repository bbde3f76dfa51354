"""The Deep State Identifier's GridWorld dataset: scripted KeyCorridor episodes with known critical steps.

MiniGrid ``KeyCorridor`` with 3 rows, room size 6 and a ball as goal (``MiniGrid-KeyCorridorS6R3-v0``):
six rooms and a corridor; the ball lies behind a locked door whose key is in another room. Each
observation is the agent's partial view rendered as RGB (7x7 cells, ``tile_size`` 4 -> 28x28x3 uint8),
exactly what :class:`~critwrap.wrappers.minigrid.MiniGridImage` returns.

* **Positive** episodes follow scripted shortest paths (Dijkstra over position x heading, turning and
  toggling doors on the way): to the key, pick it up, to the locked door, unlock it, drop the key
  (MiniGrid picks up only with empty hands), to the ball, pick it up (success, label 1, the env's reward).
* **Negative** episodes (label 0): 85% are 24 random moves from the start; 15% go to the key and pick
  it up, then half of them go to the locked door, unlock it and make 8 random moves, the other half make
  16 random moves. A random move is a random turn or a step forward; stepping into a closed door opens
  it first (one toggle step), as moves do in the original generator.

**Length-matched negatives** (``negative_length="matched"``, a critwrap option; the default ``"paper"``
is the original's move counts): in the paper's dataset the length of an episode alone predicts success
(85% of negatives are 24 steps; positives 22-84), which lets DSI's return predictor ignore the frames'
content and makes the detector's mask collapse (see :mod:`critwrap.detectors.dsi`). With ``"matched"``, a
negative episode makes the same scripted part (if any) and then random moves until it is exactly as long
as the scripted positive episode of the same seed (cut to that length); its variant is drawn as in the
paper. The benchmark ``benchmarks/critical_states.py`` uses it by default.

Every step is a real MiniGrid action (0 left, 1 right, 2 forward, 3 pickup, 4 drop, 5 toggle), so an
episode replays in the environment from ``reset(seed=metadata["layout_seed"])``. ``observations[t]`` is
the view *before* ``actions[t]``; ``rewards[t]`` follows it; the view after the last action is
``final_observation``. The ground-truth critical steps (``metadata["critical_steps"]``) are the steps that
interact with the key, a door or the ball: a toggle that changes a door, a pickup that picks something
up, the drop of the key. Episodes have at most 84 steps. The same seed gives the same dataset, bit for bit.

Differences from the original generator (``Dataset/data_generation.py`` of AI-Initiative-KAUST/VideoRLCS),
whose "moves" set the heading directly, open doors silently and pick up without a frame: here turns,
toggles and pickups are steps of their own, so episodes are longer (22-84 steps) and the critical steps
are the interaction steps themselves (the original marks the step that leaves a door cell, and never the
key or the ball). The original's positives stop facing the ball; here the ball is picked up.

**The original's style** (``style="original"``): the original generator's semantics, for reproducing the
paper's table. A move sets the heading directly (up, down, left, right), opens a closed door in front
silently and steps forward; a move into the key or the ball is blocked and leaves the agent facing it.
Each scripted segment (to the key; to the ball; for negatives to the locked door) starts with a frame
and closes every door first, as the original does; the key pickup makes no frame; random moves are
uniform over the 4 headings, a frame after each. The critical frames are those in which the agent
stands on a door cell (the original labels the steps that leave a door cell). Episodes carry frames,
label and agent positions, no actions or rewards; positives are 16-62 frames (mean about 32), about 4
critical frames each, so the trivial all-frames detector scores F1@1 / 2 / 3 of about 52 / 72 / 84 on
them (the paper's "Random" row: 56 / 75 / 86). One difference remains: the original's labels are
shifted by one frame after the key pickup (its segments add a frame its label list does not); here
every frame is labelled by where the agent stands in it.

Example:
    >>> from critwrap.gridworld import generate_gridworld
    >>> episodes = generate_gridworld(4, seed=0, progress=False)
    >>> [ep.metadata["kind"] for ep in episodes]
    ['negative', 'positive', 'negative', 'positive']
    >>> ep = episodes[1]
    >>> ep.observations.shape[1:], ep.label, ep.episode_return > 0
    ((28, 28, 3), 1, True)
    >>> all(int(ep.actions[t]) in (3, 4, 5) for t in ep.metadata["critical_steps"])
    True
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from critwrap.episodes import Episode

if TYPE_CHECKING:
    from critwrap.episodes import EpisodeStore

__all__ = [
    "ENV_ID",
    "MAX_EPISODE_STEPS",
    "NEGATIVE_LENGTHS",
    "SPLIT_SEED_OFFSETS",
    "STYLES",
    "GridWorldPlanner",
    "generate_gridworld",
    "generate_gridworld_splits",
    "gridworld_episode",
    "make_gridworld_env",
    "split_seed",
]

ENV_ID = "MiniGrid-KeyCorridorS6R3-v0"
#: Longest episode the original dataset has; every generated episode is at most this long.
MAX_EPISODE_STEPS = 84
#: Seeds of split ``s`` start at ``seed + SPLIT_SEED_OFFSETS[s]`` so that splits never share a layout seed
#: (as long as a split holds fewer than 1,000,000 episodes) and the val / test sets do not change when the
#: training set grows.
SPLIT_SEED_OFFSETS: dict[str, int] = {"train": 0, "val": 1_000_000, "test": 2_000_000}

# MiniGrid actions and headings.
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = 0, 1, 2, 3, 4, 5
_DIR_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))  # 0 right, 1 down, 2 left, 3 up (MiniGrid's DIR_TO_VEC)
#: ``negative_length`` settings: the original's fixed move counts, or lengths matched to the positives.
NEGATIVE_LENGTHS = ("paper", "matched")
#: ``style`` settings: MiniGrid's own actions (critwrap's default) or the original generator's moves.
STYLES = ("minigrid", "original")
_RANDOM_WALK_P_KEY = 0.15  # share of negatives that first fetch the key
_RANDOM_MOVES = 24
_KEY_THEN_DOOR_MOVES = 8
_KEY_THEN_WANDER_MOVES = 16


def make_gridworld_env(tile_size: int = 4) -> gym.Env[np.ndarray, int]:
    """``MiniGrid-KeyCorridorS6R3-v0`` (ball as goal) with RGB partial views (``tile_size`` * 7 pixels square).

    The 1080-step time limit of the registered env is far above the 84 steps of any generated episode.
    """
    import minigrid  # noqa: F401  (registers the MiniGrid-* ids)

    from critwrap.wrappers.minigrid import MiniGridImage

    env = gym.make(ENV_ID, obj_type="ball")
    return MiniGridImage(env, tile_size=tile_size)


class GridWorldPlanner:
    """Shortest action sequences in a MiniGrid grid, over (x, y, heading) with turns, doors and pickups.

    The cost of a plan is its number of MiniGrid steps: a turn or a step forward costs 1; stepping into a
    closed door costs 2 (toggle, then forward); a locked door is passable (cost 2) only when the agent
    carries the key of its colour. Walls and objects that cannot be overlapped (key, ball, box) block.
    Ties are broken in a fixed order (left, right, forward), so plans are deterministic.
    """

    def __init__(self, base_env: Any) -> None:
        self.env = base_env

    def _enter_cost(self, x: int, y: int) -> int | None:
        env = self.env
        if not (0 <= x < env.width and 0 <= y < env.height):
            return None
        cell = env.grid.get(x, y)
        if cell is None or cell.can_overlap():
            return 1
        if cell.type == "door":
            if not cell.is_locked:
                return 2
            carrying = env.carrying
            if carrying is not None and carrying.type == "key" and carrying.color == cell.color:
                return 2
        return None

    def plan_to_face(self, target: tuple[int, int]) -> list[int]:
        """Actions (left / right / forward, toggles left out) that end with the agent facing ``target``."""
        tx, ty = int(target[0]), int(target[1])
        return self.plan_to_face_any(lambda x, y: (x, y) == (tx, ty), what=f"{target}")

    def plan_to_face_empty(self) -> list[int]:
        """Actions that end with the agent facing the nearest empty cell (where it can drop an object)."""
        env = self.env
        return self.plan_to_face_any(
            lambda x, y: 0 <= x < env.width and 0 <= y < env.height and env.grid.get(x, y) is None,
            what="an empty cell",
        )

    def plan_to_face_any(self, wanted: Callable[[int, int], bool], what: str = "the target") -> list[int]:
        """Cheapest actions after which the cell in front of the agent satisfies ``wanted(x, y)``."""
        env = self.env
        start = (int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir))

        def facing_target(state: tuple[int, int, int]) -> bool:
            dx, dy = _DIR_VEC[state[2]]
            return wanted(state[0] + dx, state[1] + dy)

        best: dict[tuple[int, int, int], int] = {start: 0}
        parent: dict[tuple[int, int, int], tuple[tuple[int, int, int], int]] = {}
        heap: list[tuple[int, int, tuple[int, int, int]]] = [(0, 0, start)]
        counter = 1
        while heap:
            cost, _, state = heapq.heappop(heap)
            if cost > best.get(state, math.inf):
                continue
            if facing_target(state):
                actions: list[int] = []
                while state != start:
                    state, action = parent[state]
                    actions.append(action)
                return actions[::-1]
            x, y, d = state
            dx, dy = _DIR_VEC[d]
            enter = self._enter_cost(x + dx, y + dy)
            moves: list[tuple[tuple[int, int, int], int, int]] = [
                ((x, y, (d - 1) % 4), LEFT, 1),
                ((x, y, (d + 1) % 4), RIGHT, 1),
            ]
            if enter is not None:
                moves.append(((x + dx, y + dy, d), FORWARD, enter))
            for nxt, action, step_cost in moves:
                new_cost = cost + step_cost
                if new_cost < best.get(nxt, math.inf):
                    best[nxt] = new_cost
                    parent[nxt] = (state, action)
                    heapq.heappush(heap, (new_cost, counter, nxt))
                    counter += 1
        raise RuntimeError(f"no path from {start[:2]} to a cell facing {what}: the layout is disconnected")


@dataclass
class _Recorder:
    """Steps a MiniGrid env, keeping the pre-action view, the action, the reward and critical flags."""

    base: Any  # the unwrapped MiniGridEnv
    tile_size: int
    obs: np.ndarray
    frames: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    critical: list[int] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)
    headings: list[int] = field(default_factory=list)
    layout: dict[str, list[int]] = field(default_factory=dict)
    done: bool = False
    success: bool = False

    def front_cell(self) -> Any:
        base = self.base
        fx, fy = base.front_pos
        if not (0 <= fx < base.width and 0 <= fy < base.height):
            return None
        return base.grid.get(int(fx), int(fy))

    def step(self, action: int) -> None:
        if self.done:
            return
        base = self.base
        front = self.front_cell()
        door_before = (front.is_open, front.is_locked) if front is not None and front.type == "door" else None
        carrying_before = base.carrying
        self.frames.append(self.obs)
        self.actions.append(int(action))
        self.positions.append((int(base.agent_pos[0]), int(base.agent_pos[1])))
        self.headings.append(int(base.agent_dir))
        _, reward, terminated, truncated, _ = base.step(action)
        self.obs = base.get_pov_render(self.tile_size)  # what MiniGridImage(tile_size) returns
        self.rewards.append(float(reward))
        interacted = False
        if action == TOGGLE and door_before is not None:
            interacted = (front.is_open, front.is_locked) != door_before
        elif action == PICKUP:
            interacted = base.carrying is not None and base.carrying is not carrying_before
        elif action == DROP:
            interacted = carrying_before is not None and base.carrying is None
        if interacted:
            self.critical.append(len(self.actions) - 1)
        if terminated or truncated:
            self.done = True
            self.success = bool(terminated and float(reward) > 0)

    def forward(self) -> None:
        """Step forward, toggling a closed door in front first (the door-opening move of the original)."""
        front = self.front_cell()
        if front is not None and front.type == "door" and not front.is_open:
            carrying = self.base.carrying
            has_key = carrying is not None and carrying.type == "key" and carrying.color == front.color
            if not front.is_locked or has_key:
                self.step(TOGGLE)
        self.step(FORWARD)

    def follow(self, plan: list[int]) -> None:
        for action in plan:
            if action == FORWARD:
                self.forward()
            else:
                self.step(action)

    def random_moves(self, n: int, rng: np.random.Generator) -> None:
        for _ in range(n):
            move = int(rng.integers(3))
            if move == FORWARD:
                self.forward()
            else:
                self.step(move)


def _find(base: Any, obj_type: str, locked: bool | None = None) -> tuple[int, int]:
    for x in range(base.width):
        for y in range(base.height):
            cell = base.grid.get(x, y)
            if cell is not None and cell.type == obj_type and (locked is None or cell.is_locked == locked):
                return x, y
    raise RuntimeError(f"no {obj_type} in the KeyCorridor layout")


def _layout_seed(seed: int, attempt: int) -> int:
    """Layout seed of the ``attempt``-th try for episode seed ``seed`` (the seed itself first)."""
    if attempt == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), attempt, 0x6C61]).generate_state(1, dtype=np.uint32)[0])


@contextlib.contextmanager
def _without_dict_obs(base: Any) -> Iterator[None]:
    """Skip MiniGrid's dict observation (an unused second view computation per step) while generating."""
    base.gen_obs = dict
    try:
        yield
    finally:
        del base.gen_obs


def _play(
    base: Any,
    tile_size: int,
    layout_seed: int,
    kind: str,
    rng: np.random.Generator,
    target_len: int | None = None,
) -> tuple[_Recorder, str]:
    base.reset(seed=layout_seed)
    rec = _Recorder(base=base, tile_size=tile_size, obs=base.get_pov_render(tile_size))
    planner = GridWorldPlanner(base)
    key_pos = _find(base, "key")
    door_pos = _find(base, "door", locked=True)
    ball_pos = _find(base, "ball")
    rec.layout = {"key_pos": list(key_pos), "locked_door_pos": list(door_pos), "ball_pos": list(ball_pos)}

    def fetch_key() -> None:
        rec.follow(planner.plan_to_face(key_pos))
        rec.step(PICKUP)

    if kind == "positive":
        variant = "scripted"
        fetch_key()
        rec.follow(planner.plan_to_face(door_pos))
        rec.step(TOGGLE)  # unlock and open the locked door
        rec.follow(planner.plan_to_face_empty())
        rec.step(DROP)  # MiniGrid picks up only with empty hands
        rec.follow(planner.plan_to_face(ball_pos))
        rec.step(PICKUP)
        if not rec.success:
            raise RuntimeError(
                f"the scripted policy failed to reach the ball on layout seed {layout_seed}; please report this"
            )
    else:
        u_key, u_door = rng.random(), rng.random()
        if u_key >= _RANDOM_WALK_P_KEY:
            variant = "random"
            n_moves = _RANDOM_MOVES
        else:
            fetch_key()
            if u_door < 0.5:
                variant = "key_door_wander"
                rec.follow(planner.plan_to_face(door_pos))
                rec.step(TOGGLE)
                n_moves = _KEY_THEN_DOOR_MOVES
            else:
                variant = "key_wander"
                n_moves = _KEY_THEN_WANDER_MOVES
        if target_len is None:
            rec.random_moves(n_moves, rng)
        else:  # length-matched: random moves until the episode is as long as the layout's positive one
            while len(rec.actions) < target_len:
                rec.random_moves(1, rng)
    return rec, variant


@dataclass
class _MoveRecorder:
    """The original generator's moves: set the heading, open a closed door in front silently, step.

    A frame is recorded at the start of each scripted segment and after every move (turns, toggles and
    pickups make no frame, as in the original); a frame is critical when the agent stands on a door cell
    in it (the original marks the steps that leave a door cell).
    """

    base: Any
    tile_size: int
    frames: list[np.ndarray] = field(default_factory=list)
    critical: list[int] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)
    headings: list[int] = field(default_factory=list)
    layout: dict[str, list[int]] = field(default_factory=dict)

    def record(self) -> None:
        base = self.base
        pos = (int(base.agent_pos[0]), int(base.agent_pos[1]))
        cell = base.grid.get(*pos)
        if cell is not None and cell.type == "door":
            self.critical.append(len(self.frames))
        self.frames.append(base.get_pov_render(self.tile_size))
        self.positions.append(pos)
        self.headings.append(int(base.agent_dir))

    def move(self, heading: int) -> None:
        base = self.base
        base.agent_dir = int(heading)
        fx, fy = base.front_pos
        front = base.grid.get(int(fx), int(fy))
        if front is not None and front.type == "door" and not front.is_open:
            base.step(TOGGLE)  # opens it (a locked one only with its key in hand)
        base.step(FORWARD)
        self.record()

    def close_doors(self) -> None:
        """The original closes every door before each scripted segment."""
        base = self.base
        for x in range(base.width):
            for y in range(base.height):
                cell = base.grid.get(x, y)
                if cell is not None and cell.type == "door":
                    cell.is_open = False

    def _passable(self, x: int, y: int) -> bool:
        base = self.base
        if not (0 <= x < base.width and 0 <= y < base.height):
            return False
        cell = base.grid.get(x, y)
        if cell is None or cell.can_overlap():
            return True
        if cell.type == "door":
            if not cell.is_locked:
                return True
            carrying = base.carrying
            return carrying is not None and carrying.type == "key" and carrying.color == cell.color
        return False

    def path_to(self, target: tuple[int, int]) -> list[int]:
        """Headings of the shortest 4-neighbour path whose last move goes into ``target``: onto it when it
        is passable (a door), else that move is blocked and the agent ends facing it (key, ball)."""
        base = self.base
        start = (int(base.agent_pos[0]), int(base.agent_pos[1]))
        parent: dict[tuple[int, int], tuple[tuple[int, int], int]] = {}
        seen = {start}
        queue = [start]
        head = 0
        while head < len(queue):
            x, y = queue[head]
            head += 1
            for d, (dx, dy) in enumerate(_DIR_VEC):
                nxt = (x + dx, y + dy)
                if nxt == target:
                    moves = [d]
                    cur = (x, y)
                    while cur != start:
                        cur, heading = parent[cur]
                        moves.append(heading)
                    moves.reverse()
                    return moves
                if nxt in seen or not self._passable(*nxt):
                    continue
                seen.add(nxt)
                parent[nxt] = ((x, y), d)
                queue.append(nxt)
        raise RuntimeError(f"no path from {start} to {target}: the layout is disconnected")

    def segment(self, target: tuple[int, int]) -> None:
        self.close_doors()
        self.record()
        for heading in self.path_to(target):
            self.move(heading)

    def random_moves(self, n: int, rng: np.random.Generator) -> None:
        for _ in range(n):
            self.move(int(rng.integers(4)))


def _play_original(
    base: Any,
    tile_size: int,
    layout_seed: int,
    kind: str,
    rng: np.random.Generator,
    target_len: int | None = None,
) -> tuple[_MoveRecorder, str]:
    base.reset(seed=layout_seed)
    rec = _MoveRecorder(base=base, tile_size=tile_size)
    key_pos = _find(base, "key")
    door_pos = _find(base, "door", locked=True)
    ball_pos = _find(base, "ball")
    rec.layout = {"key_pos": list(key_pos), "locked_door_pos": list(door_pos), "ball_pos": list(ball_pos)}

    def fetch_key() -> None:
        rec.segment(key_pos)  # ends facing the key
        base.step(PICKUP)  # no frame, as in the original
        if base.carrying is None:
            raise RuntimeError(f"the scripted policy failed to pick up the key on layout seed {layout_seed}")

    if kind == "positive":
        variant = "scripted"
        fetch_key()
        rec.segment(ball_pos)  # through the locked door (opened with the key), ends facing the ball
    else:
        u_key, u_door = rng.random(), rng.random()
        if u_key >= _RANDOM_WALK_P_KEY:
            variant, n_moves = "random", _RANDOM_MOVES
        else:
            fetch_key()
            if u_door < 0.5:
                variant, n_moves = "key_door_wander", _KEY_THEN_DOOR_MOVES
                rec.segment(door_pos)  # onto the locked door's cell (unlocked with the key on the way)
            else:
                variant, n_moves = "key_wander", _KEY_THEN_WANDER_MOVES
        if target_len is None:
            rec.random_moves(n_moves, rng)
        else:
            while len(rec.frames) < target_len:
                rec.random_moves(1, rng)
    return rec, variant


def gridworld_episode(
    seed: int,
    kind: str,
    *,
    env: gym.Env[Any, Any] | None = None,
    tile_size: int = 4,
    max_steps: int = MAX_EPISODE_STEPS,
    negative_length: str = "paper",
    style: str = "minigrid",
) -> Episode:
    """Play one scripted episode of ``kind`` ``"positive"`` or ``"negative"`` for ``seed``.

    ``style``: ``"minigrid"`` (default: every step a MiniGrid action; critical steps = interactions with
    key, doors and ball) or ``"original"`` (the original generator's moves and labels; see the module
    docstring: episodes carry frames and a label, no actions or rewards).

    ``negative_length``: ``"paper"`` (24, 8 or 16 random moves, as the original generator) or
    ``"matched"``: a negative episode makes random moves until it is as long as the scripted positive
    episode of the same seed, and is cut to exactly that length, so that episode length says nothing
    about success (see the module docstring).

    ``env``: a KeyCorridor env to reuse (e.g. from :func:`make_gridworld_env`; made when ``None``); the
    views are rendered as :class:`~critwrap.wrappers.minigrid.MiniGridImage` with ``tile_size`` does, and
    replaying ``actions`` from ``reset(seed=metadata["layout_seed"])`` reproduces them. Everything (layout, negative variant, random moves) is a
    function of ``seed``. Negative episodes longer than ``max_steps`` are cut; a layout whose scripted
    positive episode would be longer than ``max_steps`` (under 1% at 84) is replaced by the layout of a seed
    derived from ``seed`` (``metadata["layout_seed"]``, the layout the episode plays).
    """
    if kind not in ("positive", "negative"):
        raise ValueError(f"kind must be 'positive' or 'negative', got {kind!r}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if negative_length not in NEGATIVE_LENGTHS:
        raise ValueError(f"negative_length must be one of {NEGATIVE_LENGTHS}, got {negative_length!r}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    own_env = env is None
    if env is None:
        env = make_gridworld_env(tile_size=tile_size)
    base = env.unwrapped
    from minigrid.envs.keycorridor import KeyCorridorEnv

    if not isinstance(base, KeyCorridorEnv):
        raise TypeError(f"gridworld_episode needs a MiniGrid KeyCorridor env, got {type(base).__name__}")
    try:
        target_len = None
        if kind == "negative" and negative_length == "matched":
            # as long as the positive episode of this seed (the same layout search)
            target_len = len(
                gridworld_episode(
                    seed, "positive", env=env, tile_size=tile_size, max_steps=max_steps, style=style
                )
            )
        with _without_dict_obs(base):
            for attempt in range(1000):
                layout_seed = _layout_seed(seed, attempt)
                rng = np.random.default_rng([int(seed), 0xC217])
                if style == "original":
                    moves, variant = _play_original(base, int(tile_size), layout_seed, kind, rng, target_len)
                    if kind == "negative" or len(moves.frames) <= max_steps:
                        break
                    continue
                rec, variant = _play(base, int(tile_size), layout_seed, kind, rng, target_len)
                if kind == "negative" or len(rec.actions) <= max_steps:
                    break
            else:
                raise RuntimeError(
                    f"no layout with a scripted episode of at most max_steps={max_steps} steps"
                )
    finally:
        if own_env:
            env.close()
    if style == "original":
        return _original_episode(
            moves, seed, layout_seed, kind, variant, negative_length, max_steps, target_len
        )
    n = min(len(rec.actions), max_steps if target_len is None else target_len)
    success = rec.success and len(rec.actions) <= n
    final = rec.frames[n] if n < len(rec.frames) else rec.obs
    return Episode(
        observations=np.stack(rec.frames[:n]).astype(np.uint8),
        actions=np.asarray(rec.actions[:n], dtype=np.int64),
        rewards=np.asarray(rec.rewards[:n], dtype=np.float64),
        label=int(success),
        infos={
            "agent_pos": np.asarray(rec.positions[:n], dtype=np.int64),
            "agent_dir": np.asarray(rec.headings[:n], dtype=np.int64),
        },
        metadata={
            "seed": int(seed),
            "layout_seed": int(layout_seed),
            "kind": kind,
            "variant": variant,
            "negative_length": negative_length,
            "style": "minigrid",
            "critical_steps": [int(t) for t in rec.critical if t < n],
            "success": bool(success),
            "terminated": bool(success),
            "truncated": not success,
            "env_id": ENV_ID,
            **rec.layout,
        },
        final_observation=np.asarray(final, dtype=np.uint8),
    )


def _original_episode(
    rec: _MoveRecorder,
    seed: int,
    layout_seed: int,
    kind: str,
    variant: str,
    negative_length: str,
    max_steps: int,
    target_len: int | None,
) -> Episode:
    n = min(len(rec.frames), max_steps if target_len is None else target_len)
    label = int(kind == "positive")
    return Episode(
        observations=np.stack(rec.frames[:n]).astype(np.uint8),
        episode_return=float(label),
        label=label,
        infos={
            "agent_pos": np.asarray(rec.positions[:n], dtype=np.int64),
            "agent_dir": np.asarray(rec.headings[:n], dtype=np.int64),
        },
        metadata={
            "seed": int(seed),
            "layout_seed": int(layout_seed),
            "kind": kind,
            "variant": variant,
            "negative_length": negative_length,
            "style": "original",
            "critical_steps": [int(t) for t in rec.critical if t < n],
            "success": bool(label),
            "env_id": ENV_ID,
            **rec.layout,
        },
    )


def _kinds(n_episodes: int, positive_fraction: float) -> Iterator[str]:
    """Exactly ``round(n * fraction)``-ish positives, spread evenly: episode ``i`` is positive iff
    ``floor((i + 1) * f) > floor(i * f)``."""
    for i in range(n_episodes):
        yield (
            "positive"
            if math.floor((i + 1) * positive_fraction) > math.floor(i * positive_fraction)
            else "negative"
        )


def generate_gridworld(
    n_episodes: int,
    out_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    positive_fraction: float = 0.5,
    tile_size: int = 4,
    progress: bool = True,
    max_steps: int = MAX_EPISODE_STEPS,
    desc: str = "gridworld",
    negative_length: str = "paper",
    style: str = "minigrid",
) -> EpisodeStore | list[Episode]:
    """Generate ``n_episodes`` GridWorld episodes; episode ``i`` plays the layout of seed ``seed + i``.

    Episode ``i`` is positive iff ``floor((i + 1) * positive_fraction) > floor(i * positive_fraction)``, so
    the dataset holds ``floor(n * positive_fraction)`` positives spread evenly. With ``out_dir`` the
    episodes are appended to a new :class:`~critwrap.episodes.EpisodeStore` there (which must be empty)
    and the store is returned; otherwise a list of :class:`~critwrap.episodes.Episode`.
    """
    if n_episodes < 0:
        raise ValueError(f"n_episodes must be >= 0, got {n_episodes}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    if tile_size < 1:
        raise ValueError(f"tile_size must be a positive integer, got {tile_size}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    store: EpisodeStore | None = None
    if out_dir is not None:
        from critwrap.episodes import EpisodeStore

        store = EpisodeStore(Path(out_dir), create=True)
        if len(store) > 0:
            raise FileExistsError(
                f"{out_dir} already holds {len(store)} episodes; give an empty or new directory"
            )
        store.set_metadata(
            {
                "generator": "critwrap.gridworld.generate_gridworld",
                "env_id": ENV_ID,
                "n_episodes": int(n_episodes),
                "seed": int(seed),
                "positive_fraction": float(positive_fraction),
                "tile_size": int(tile_size),
                "max_steps": int(max_steps),
                "negative_length": negative_length,
                "style": style,
                "observation": f"agent's partial view, RGB uint8 ({7 * tile_size}, {7 * tile_size}, 3)",
                "critical_steps": (
                    "metadata['critical_steps']: steps that toggle a door, pick up, or drop the key"
                    if style == "minigrid"
                    else "metadata['critical_steps']: frames in which the agent stands on a door cell"
                ),
            }
        )
    env = make_gridworld_env(tile_size=tile_size)
    episodes: list[Episode] = []
    kinds = list(_kinds(n_episodes, positive_fraction))
    iterator: Any = enumerate(kinds)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=n_episodes, desc=desc, unit="ep")
    try:
        for i, kind in iterator:
            ep = gridworld_episode(
                seed + i,
                kind,
                env=env,
                tile_size=tile_size,
                max_steps=max_steps,
                negative_length=negative_length,
                style=style,
            )
            ep.metadata["tile_size"] = int(tile_size)
            if store is not None:
                store.append(ep)
            else:
                episodes.append(ep)
    finally:
        env.close()
    return store if store is not None else episodes


def split_seed(split: str, seed: int = 0) -> int:
    """First layout seed of ``split`` (``"train"``, ``"val"`` or ``"test"``) for the dataset seed ``seed``."""
    if split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_SEED_OFFSETS)}")
    return int(seed) + SPLIT_SEED_OFFSETS[split]


def generate_gridworld_splits(
    out_dir: str | os.PathLike[str] | None = None,
    n_train: int = 2000,
    n_val: int = 200,
    n_test: int = 400,
    seed: int = 0,
    **kwargs: Any,
) -> dict[str, EpisodeStore | list[Episode]]:
    """Train / val / test datasets on disjoint seed ranges (see :data:`SPLIT_SEED_OFFSETS`).

    With ``out_dir``, the splits go to ``out_dir/train``, ``out_dir/val`` and ``out_dir/test``; splits of
    size 0 are skipped. ``kwargs`` go to :func:`generate_gridworld`.
    """
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    for name, n in sizes.items():
        if not 0 <= n < 1_000_000:
            raise ValueError(f"n_{name} must be in [0, 1000000), got {n}")
    desc = kwargs.pop("desc", "gridworld")
    out: dict[str, EpisodeStore | list[Episode]] = {}
    for name, n in sizes.items():
        if n == 0:
            continue
        target = None if out_dir is None else Path(out_dir) / name
        out[name] = generate_gridworld(
            n, target, seed=split_seed(name, seed), desc=f"{desc} {name}", **kwargs
        )
    return out
