"""PPO vs PPO + SubgoalReward on MiniGrid sparse-reward tasks, success-rate curves, rliable IQM.

1. **Data.** For every task, scripted successful episodes (shortest paths, planned by
   :class:`critwrap.gridworld.GridWorldPlanner`: fetch the key, unlock the door, then reach the goal
   square (DoorKey) or drop the key and pick up the ball (KeyCorridor); label 1) and failed ones (label
   0: 70% random walks of 15-40 moves, 30% fetch the key then 12 random moves), recorded as the agent's
   RGB partial view at 4 pixels a cell (28x28x3, what ``MiniGridImage(tile_size=4)`` returns). The
   interaction steps (pickup, unlocking toggle, drop) are kept as ground-truth critical steps.
2. **Detector.** One small DSI (channels 16-32-64-64-128, LSTM 64, lr 1e-3) fitted on the episodes of
   all tasks together; its top-m precision against the ground-truth critical steps of held-out
   successful episodes is reported beside a random detector's.
3. **Runs.** Per task, method and seed: SB3 PPO (MLP 64x64 on MiniGrid's symbolic 7x7x3 view; 8 envs,
   n_steps 128, batch 256, 4 epochs, lr 5e-4, ent_coef 0.01, gamma 0.99). ``ppo+subgoal`` adds
   :class:`critwrap.vec.SubgoalRewardVecEnv` (the batched twin of ``SubgoalReward``: one DSI call per
   step for the 8 envs) on the RGB views, with ``detector=DSI``, ``episodes=`` 10 successful + 10 failed
   scripted episodes of the task, ``k=12, threshold=0.99, exclude_failed=True, potential_based=True,
   gamma=0.99`` (k and threshold chosen on held-out scripted episodes, see ``--sweep``); the policy
   sees the symbolic view. The success rate is measured on the training episodes (original reward > 0
   at termination), in 10 windows of steps. ``ppo+oracle`` is a calibration arm, not a critwrap
   method: the same potential-based shaping with *perfect* subgoals read from the simulator (the key
   picked up, the locked door opened, and on KeyCorridor the key put down after that; ``OracleSubgoals``),
   i.e. the best the detector's subgoals could do for this PPO.
4. **Aggregate.** Per task: IQM over seeds (rliable, stratified bootstrap 95% CIs, via
   :mod:`critwrap.evaluation.aggregate`) of the final success rate (last 20% of the steps) and the IQM
   curve; a PNG of the curves. Results are appended to ``results.jsonl`` (a rerun skips what is done).

Usage:
    python benchmarks/subgoal.py --out bench_out/subgoal --steps 40000 --seeds 0 1 2 3 4
    python benchmarks/subgoal.py --out bench_out/subgoal --summary-only --markdown docs/benchmarks_subgoal_table.md
    python benchmarks/subgoal.py --out /tmp/sg_smoke --steps 2048 --seeds 0 --tasks DoorKey-5x5  # smoke
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

TASKS = {
    "DoorKey-5x5": "MiniGrid-DoorKey-5x5-v0",
    "KeyCorridorS3R1": "MiniGrid-KeyCorridorS3R1-v0",
    "DoorKey-8x8": "MiniGrid-DoorKey-8x8-v0",
    "KeyCorridorS3R3": "MiniGrid-KeyCorridorS3R3-v0",
}
TILE = 4
METHODS = ("ppo", "ppo+subgoal", "ppo+oracle")


# ---- environments ------------------------------------------------------------------------------------


class Views(gym.Wrapper[np.ndarray, Any, Any, Any]):
    """Over a bare MiniGrid env: the RGB partial view as the observation (``get_pov_render(4)``, what
    ``MiniGridImage(tile_size=4)`` returns), the symbolic view kept in ``self.symbolic`` (the policy's input,
    read by :class:`SymbolicVec`), ``info["success"]`` and ``info["terminal_symbolic"]`` at episode ends."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 255, (7 * TILE, 7 * TILE, 3), np.uint8)
        self.symbolic = np.zeros((7, 7, 3), np.uint8)

    def _rgb(self, obs: dict[str, Any]) -> np.ndarray:
        self.symbolic = obs["image"]
        return self.env.unwrapped.get_pov_render(TILE)

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        return self._rgb(obs), info

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        rgb = self._rgb(obs)
        if terminated or truncated:
            info = {
                **info,
                "success": bool(terminated and float(reward) > 0),
                "terminal_symbolic": self.symbolic,
            }
        return rgb, reward, terminated, truncated, info


class OracleSubgoals(gym.Wrapper[Any, Any, Any, Any]):
    """Calibration arm ``ppo+oracle``: the same potential-based form as ``SubgoalReward``
    (``r + gamma * (1 - terminated) * phi(s') - phi(s)``, each subgoal paying once per episode), with
    ``phi = bonus * (number of ground-truth subgoals reached)`` read from the simulator: the key picked
    up, the locked door opened and (KeyCorridor) the key put down after that, i.e. the critical steps of
    the scripted episodes. Not a critwrap method: it tells what perfect subgoals would give this PPO."""

    def __init__(self, env: gym.Env[Any, Any], bonus: float, gamma: float = 0.99) -> None:
        super().__init__(env)
        self.bonus, self.gamma = float(bonus), float(gamma)
        self.reached = np.zeros(3, bool)
        self.corridor = "KeyCorridor" in str(env.unwrapped.spec.id if env.unwrapped.spec else "")
        self._door_color: str | None = None
        self.phi = 0.0

    def _update(self) -> float:
        base: Any = self.env.unwrapped
        carrying = base.carrying
        if carrying is not None and carrying.type == "key":
            self.reached[0] = True
        doors = [
            c
            for c in base.grid.grid
            if c is not None and c.type == "door" and getattr(c, "color", None) == self._door_color
        ]
        if any(d.is_open for d in doors):
            self.reached[1] = True
        if self.corridor and self.reached[1] and carrying is None:
            self.reached[2] = True
        return self.bonus * float(self.reached.sum())

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        base: Any = self.env.unwrapped
        locked = [c for c in base.grid.grid if c is not None and c.type == "door" and c.is_locked]
        self._door_color = locked[0].color if locked else None
        self.reached[:] = False
        self.phi = self._update()
        return obs, info

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        phi = self._update()
        shaped = float(reward) + self.gamma * (0.0 if terminated else phi) - self.phi
        self.phi = phi
        info = {**info, "original_reward": float(reward), "subgoal_bonus": shaped - float(reward)}
        return obs, shaped, terminated, truncated, info


def _sym(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / np.array([10.0, 5.0, 2.0], np.float32)).reshape(*x.shape[:-3], -1)


def make_venv(
    env_id: str,
    n_envs: int,
    seed: int,
    subgoal_kwargs: dict[str, Any] | None,
    oracle_bonus: float | None = None,
) -> Any:
    """8 envs of RGB views (DummyVecEnv), [SubgoalRewardVecEnv on the RGB views], then the policy's
    symbolic observations (MLP input, 147 floats)."""
    import minigrid
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnvWrapper

    from critwrap.vec import SubgoalRewardVecEnv

    gym.register_envs(minigrid)

    class SymbolicVec(VecEnvWrapper):
        def __init__(self, venv: Any) -> None:
            super().__init__(venv, observation_space=gym.spaces.Box(0.0, 1.0, (147,), np.float32))

        def _obs(self) -> np.ndarray:
            return _sym(np.stack(self.venv.get_attr("symbolic")))

        def reset(self) -> np.ndarray:
            self.venv.reset()
            return self._obs()

        def step_wait(self) -> Any:
            _, rewards, dones, infos = self.venv.step_wait()
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = _sym(infos[i]["terminal_symbolic"])
            return self._obs(), rewards, dones, infos

    def make_one() -> gym.Env[Any, Any]:
        env: gym.Env[Any, Any] = Views(gym.make(env_id))
        if oracle_bonus is not None:  # outside Views, so that "success" reads the true reward
            env = OracleSubgoals(env, oracle_bonus)
        return env

    venv: Any = DummyVecEnv([make_one] * n_envs)
    venv.seed(seed)
    if subgoal_kwargs is not None:
        venv = SubgoalRewardVecEnv(venv, **subgoal_kwargs)
    return SymbolicVec(venv)


# ---- data ----------------------------------------------------------------------------------------------


def scripted_episode(env_id: str, seed: int, kind: str) -> Any:
    """One scripted episode (``kind`` "positive" / "negative") with ground-truth critical steps."""
    import minigrid

    from critwrap.episodes import Episode
    from critwrap.gridworld import (
        DROP,
        PICKUP,
        TOGGLE,
        GridWorldPlanner,
        _find,
        _Recorder,
        _without_dict_obs,
    )

    gym.register_envs(minigrid)
    env = gym.make(env_id)
    base: Any = env.unwrapped
    rng = np.random.default_rng([seed, 0x5B])
    base.reset(seed=seed)
    with _without_dict_obs(base):
        rec = _Recorder(base=base, tile_size=TILE, obs=base.get_pov_render(TILE))
        planner = GridWorldPlanner(base)
        key = _find(base, "key")
        door = _find(base, "door", locked=True)
        if kind == "positive":
            rec.follow(planner.plan_to_face(key))
            rec.step(PICKUP)
            rec.follow(planner.plan_to_face(door))
            rec.step(TOGGLE)
            if "KeyCorridor" in env_id:
                rec.follow(planner.plan_to_face_empty())
                rec.step(DROP)
                rec.follow(planner.plan_to_face(_find(base, "ball")))
                rec.step(PICKUP)
            else:
                rec.follow(planner.plan_to_face(_find(base, "goal")))
                rec.forward()
            if not rec.success:
                raise RuntimeError(f"scripted policy failed on {env_id} seed {seed}")
        elif rng.random() < 0.7:
            rec.random_moves(int(rng.integers(15, 41)), rng)
        else:
            rec.follow(planner.plan_to_face(key))
            rec.step(PICKUP)
            rec.random_moves(12, rng)
    env.close()
    return Episode(
        np.stack(rec.frames).astype(np.uint8),
        actions=np.asarray(rec.actions),
        rewards=np.asarray(rec.rewards),
        label=int(rec.success),
        metadata={"env_id": env_id, "seed": seed, "kind": kind, "critical_steps": list(rec.critical)},
    )


def build_data(n_per_kind: int, n_val: int) -> dict[str, dict[str, list[Any]]]:
    data: dict[str, dict[str, list[Any]]] = {}
    for t, (task, env_id) in enumerate(TASKS.items()):
        base_seed = 10_000 * (t + 1)
        train = [
            scripted_episode(env_id, base_seed + i, kind)
            for i in range(n_per_kind)
            for kind in ("positive", "negative")
        ]
        val = [
            scripted_episode(env_id, base_seed + 5_000 + i, kind)
            for i in range(n_val)
            for kind in ("positive", "negative")
        ]
        data[task] = {"train": train, "val": val}
    return data


def top_m_precision(scores: np.ndarray, critical: list[int]) -> float:
    m = len(critical)
    top = np.argsort(-scores, kind="stable")[:m]
    return float(np.mean([min(abs(int(t) - c) for c in critical) <= 1 for t in top]))


def fit_detector(out: Path, data: dict[str, dict[str, list[Any]]], epochs: int) -> tuple[Any, dict[str, Any]]:
    from critwrap.detectors.dsi import DSI

    path = out / "dsi"
    stats_path = out / "detector.json"
    if (path / "config.json").is_file() and stats_path.is_file():
        return DSI.load(path), json.loads(stats_path.read_text())
    train = [ep for d in data.values() for ep in d["train"]]
    det = DSI(channels=(16, 32, 64, 64, 128), lstm_hidden=64, lr=1e-3, batch_size=32, num_threads=1)
    t0 = time.perf_counter()
    det.fit(train, epochs=epochs, progress=False, seed=0)
    fit_s = time.perf_counter() - t0
    det.save(path)
    rng = np.random.default_rng(0)
    stats: dict[str, Any] = {"fit_seconds": fit_s, "epochs": epochs, "train_episodes": len(train)}
    for task, d in data.items():
        dsi_p, rnd_p = [], []
        for ep in d["val"]:
            if ep.label != 1:
                continue
            crit = ep.metadata["critical_steps"]
            dsi_p.append(top_m_precision(det.score(ep.frames), crit))
            rnd_p.append(top_m_precision(rng.random(len(ep)), crit))
        stats[task] = {
            "top_m_precision_dsi": float(np.mean(dsi_p)),
            "top_m_precision_random": float(np.mean(rnd_p)),
        }
    stats_path.write_text(json.dumps(stats, indent=2))
    return det, stats


def matching_stats(det: Any, episodes: list[Any], val: list[Any], threshold: float, k: int) -> dict[str, Any]:
    """How selective the subgoals are, on held-out episodes: the share of failed episodes' frames that
    reach some subgoal, the share of failed / successful episodes reaching at least one."""
    from critwrap.wrappers.subgoal import SubgoalSet, extract_subgoals

    try:
        emb, center = extract_subgoals(
            det, episodes, det.embed, k=k, threshold=threshold, exclude_failed=True
        )
    except ValueError as exc:
        return {"error": str(exc)}
    sg = SubgoalSet(emb, None, threshold, center)
    neg = [ep for ep in val if ep.metadata["kind"] == "negative"]
    pos = [ep for ep in val if ep.metadata["kind"] == "positive"]
    walk = np.concatenate([ep.frames for ep in neg])
    return {
        "subgoals": float(len(sg)),
        "frac_heldout_failed_frames_matching": float(sg.match(det.embed(walk)).any(1).mean()),
        "frac_heldout_failed_episodes_reaching_one": float(
            np.mean([sg.match(det.embed(e.frames)).any() for e in neg])
        ),
        "frac_heldout_successful_episodes_reaching_one": float(
            np.mean([sg.match(det.embed(e.frames)).any() for e in pos])
        ),
        "mean_subgoals_reached_per_heldout_success": float(
            np.mean([sg.match(det.embed(e.frames)).any(0).sum() for e in pos])
        ),
    }


def oracle_phases(env_id: str, ep: Any) -> np.ndarray:
    """Per frame of a scripted episode, how many of :class:`OracleSubgoals`' ground-truth subgoals have
    been reached (replayed from the episode's seed and actions): 0 before the key, 1 carrying it, 2 the
    locked door open, 3 (KeyCorridor) the key put down after that."""
    import minigrid

    gym.register_envs(minigrid)
    env = OracleSubgoals(Views(gym.make(env_id)), bonus=1.0)
    env.reset(seed=int(ep.metadata["seed"]))
    phases = [int(env.reached.sum())]
    for a in ep.actions[: len(ep.frames) - 1]:
        env.step(int(a))
        phases.append(int(env.reached.sum()))
    env.close()
    return np.asarray(phases)


def phase_alignment(
    det: Any,
    episodes: list[Any],
    val: list[Any],
    env_id: str,
    threshold: float,
    k: int,
    encoder: Any = None,
    **extract: Any,
) -> dict[str, Any]:
    """Where the detector's subgoals fire in held-out scripted episodes, by ground-truth phase: the share of
    frames of each phase that match some subgoal, in successful and in failed episodes. Subgoals that mark
    progress match late phases of successful episodes and little else. ``encoder``: embed the frames
    with it instead of the detector's own features (the detector still picks the steps)."""
    from critwrap.wrappers.subgoal import SubgoalSet, extract_subgoals

    embed = det.embed if encoder is None else encoder
    try:
        emb, center = extract_subgoals(det, episodes, embed, k=k, threshold=threshold, **extract)
    except ValueError as exc:
        return {"error": str(exc)}
    sg = SubgoalSet(emb, None, threshold, center)
    out: dict[str, Any] = {"subgoals": len(sg)}
    for kind in ("positive", "negative"):
        hits: dict[int, list[bool]] = {}
        for ep in val:
            if ep.metadata["kind"] != kind:
                continue
            match = sg.match(embed(ep.frames)).any(1)
            for phase, m in zip(oracle_phases(env_id, ep), match, strict=True):
                hits.setdefault(int(phase), []).append(bool(m))
        out[kind] = {f"phase{p}": [round(float(np.mean(h)), 3), len(h)] for p, h in sorted(hits.items())}
    return out


class ProgressEncoder:
    """A learned progress embedding (critwrap's benchmark extension, not a method of the papers): a small
    CNN regresses ``t / (T - 1)`` on every frame of successful episodes, and its 32-dimensional tanh
    embedding is the encoder. It uses the episodes' time only, no phase labels and no failed episodes.
    Callable on ``(N, H, W, C)`` uint8 frames -> ``(N, dim)`` float32, as ``SubgoalReward``'s ``encoder``."""

    def __init__(self, episodes: list[Any], seed: int = 0, epochs: int = 30, dim: int = 32) -> None:
        from torch import nn

        good = [ep for ep in episodes if ep.label == 1]
        if not good:
            raise ValueError("the progress encoder needs successful episodes")
        frames = np.concatenate([ep.frames for ep in good])
        targets = np.concatenate([np.linspace(0.0, 1.0, len(ep.frames)) for ep in good]).astype(np.float32)
        h, w, c = frames.shape[1:]
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.body(torch.zeros(1, c, h, w)).shape[1]
        self.embed_layer = nn.Sequential(nn.Linear(n_flat, dim), nn.Tanh())
        self.head = nn.Linear(dim, 1)
        params = [*self.body.parameters(), *self.embed_layer.parameters(), *self.head.parameters()]
        opt = torch.optim.Adam(params, lr=1e-3)
        x_all = self._tensor(frames)
        y_all = torch.from_numpy(targets)
        gen = torch.Generator().manual_seed(seed)
        self.losses: list[float] = []
        for _ in range(epochs):
            order = torch.randperm(len(x_all), generator=gen)
            total = 0.0
            for i in range(0, len(order), 256):
                idx = order[i : i + 256]
                pred = self.head(self.embed_layer(self.body(x_all[idx]))).squeeze(1)
                loss = torch.nn.functional.mse_loss(pred, y_all[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            self.losses.append(total / len(x_all))

    @staticmethod
    def _tensor(frames: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.embed_layer(self.body(self._tensor(np.asarray(frames)))).numpy().astype(np.float32)

    def progress(self, frames: np.ndarray) -> np.ndarray:
        """The regressed ``t / (T - 1)`` per frame."""
        with torch.inference_mode():
            x = self.embed_layer(self.body(self._tensor(np.asarray(frames))))
            return self.head(x).squeeze(1).numpy()


def _frames_key(frames: np.ndarray) -> str:
    import hashlib

    arr = np.ascontiguousarray(frames)
    return hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest()


class TrueSteps:
    """Diagnostic only (``--subgoal-steps true``): a detector that scores the scripted episodes' own critical steps
    1 and every other step 0, found by the frames' hash. It knows the ground truth, so it is not a method;
    it tells whether the detector's step choice or the embedding keeps subgoals from marking progress."""

    def __init__(self, episodes: list[Any]) -> None:
        self._steps = {_frames_key(ep.frames): list(ep.metadata["critical_steps"]) for ep in episodes}

    def score(self, frames: np.ndarray) -> np.ndarray:
        steps = self._steps.get(_frames_key(np.asarray(frames)))
        if steps is None:
            raise KeyError("TrueSteps scores only the scripted episodes it was given")
        out = np.zeros(len(frames))
        out[steps] = 1.0
        return out

    def critical_steps(
        self, scores: np.ndarray, k: int | None = None, threshold: float | None = None
    ) -> np.ndarray:
        return np.flatnonzero(np.asarray(scores) >= 0.5)


# ---- training ------------------------------------------------------------------------------------------


def run_one(
    task: str,
    method: str,
    seed: int,
    steps: int,
    det_path: Path,
    episodes: list[Any],
    threshold: float,
    k: int,
    bonus: float = 1.0,
    potential_based: bool = True,
    windows: int = 10,
    encoder: Any = None,
) -> dict[str, Any]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from critwrap.detectors.dsi import DSI

    env_id = TASKS[task]
    subgoal_kwargs = None
    oracle_bonus = bonus if method.startswith("ppo+oracle") else None
    if method.startswith("ppo+subgoal"):
        det = DSI.load(det_path)
        subgoal_kwargs = {
            "detector": det,
            "episodes": episodes,
            "k": k,
            "threshold": threshold,
            "gamma": 0.99,
            "exclude_failed": True,
            "bonus": bonus,
            "potential_based": potential_based,
        }
        if encoder is not None:
            subgoal_kwargs["encoder"] = encoder
    venv = make_venv(env_id, 8, seed, subgoal_kwargs, oracle_bonus)

    window_steps = steps / windows
    label = f"{task} {method} seed {seed}"

    class Track(BaseCallback):
        """Episode ends and bonus; prints each window's success as it closes (long runs show progress)."""

        def __init__(self) -> None:
            super().__init__()
            self.ends: list[tuple[int, bool]] = []
            self.bonus = 0.0
            self.next_report = window_steps
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
                self.bonus += abs(float(info.get("subgoal_bonus", 0.0)))
                if done:
                    self.ends.append((int(self.num_timesteps), bool(info.get("success", False))))
            if self.num_timesteps >= self.next_report:
                lo = self.next_report - window_steps
                window = [ok for t, ok in self.ends if lo < t <= self.num_timesteps]
                rate = f"{np.mean(window):.2f}" if window else "-"
                elapsed = time.perf_counter() - self.t0
                print(
                    f"  {label}: {self.num_timesteps} steps, window success {rate} ({len(window)} episodes), "
                    f"{elapsed / 60:.1f} min",
                    flush=True,
                )
                self.next_report += window_steps
            return True

    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=128,
        batch_size=256,
        n_epochs=4,
        learning_rate=5e-4,
        ent_coef=0.01,
        gamma=0.99,
        gae_lambda=0.95,
        policy_kwargs={"net_arch": [64, 64]},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    track = Track()
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=track)
    wall = time.perf_counter() - t0
    venv.close()
    edges = np.linspace(0, steps, windows + 1)
    curve = []
    counts = []
    for lo, hi in itertools.pairwise(edges):
        window = [s for t, s in track.ends if lo < t <= hi]
        curve.append(float(np.mean(window)) if window else float("nan"))
        counts.append(len(window))
    final = [s for t, s in track.ends if t > 0.8 * steps]
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "steps": int(model.num_timesteps),
        "wall_s": wall,
        "steps_per_s": model.num_timesteps / wall,
        "curve_steps": edges[1:].tolist(),
        "curve": curve,
        "curve_episodes": counts,
        "final_success": float(np.mean(final)) if final else 0.0,
        "episodes": len(track.ends),
        "mean_abs_bonus_per_step": track.bonus / max(int(model.num_timesteps), 1),
        "windows": windows,
    }


# ---- summary ---------------------------------------------------------------------------------------------


def _ffill(curve: list[float]) -> np.ndarray:
    """A window without any episode end keeps the previous window's success rate (0 before the first)."""
    out, last = [], 0.0
    for c in curve:
        last = last if c != c else c  # NaN: no episode ended in this window
        out.append(last)
    return np.asarray(out)


def summarize(out: Path, markdown: Path | None, plot: Path | None) -> str:
    from critwrap.evaluation.aggregate import aggregate_estimates, sample_efficiency

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    lines = [
        "| task | steps/run | method | seeds | final success IQM [95% CI] | mean | steps to 90% (seeds reaching it) | steps/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    curves: dict[str, dict[str, Any]] = {}
    methods = ["ppo", *sorted({r["method"] for r in rows} - {"ppo"})]
    for task in TASKS:
        for method in methods:
            rs = sorted(
                (r for r in rows if r["task"] == task and r["method"] == method), key=lambda r: r["seed"]
            )
            if not rs:
                continue
            scores = np.array([[r["final_success"]] for r in rs])
            est = aggregate_estimates({method: scores}, reps=2000, seed=0, gamma=None)[method]["IQM"]
            reach = []
            for r in rs:
                hit = [
                    s
                    for s, c, n in zip(r["curve_steps"], r["curve"], r["curve_episodes"], strict=True)
                    if n >= 8 and c >= 0.9
                ]
                reach.append(hit[0] if hit else None)
            got = [x for x in reach if x is not None]
            reach_txt = f"{int(np.median(got))} ({len(got)}/{len(rs)})" if got else f"- (0/{len(rs)})"
            sps = np.mean([r["steps_per_s"] for r in rs])
            lines.append(
                f"| {task} | {rs[0]['steps']} | {method} | {len(rs)} | {est.point:.2f} [{est.low:.2f}, {est.high:.2f}] "
                f"| {scores.mean():.2f} | {reach_txt} | {sps:.0f} |"
            )
            arr = np.array([_ffill(r["curve"]) for r in rs])[:, None, :]
            curves.setdefault(task, {})[method] = (np.array(rs[0]["curve_steps"]), arr)
    table = "\n".join(lines)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(table + "\n")
    if plot is not None and curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(curves), figsize=(4.4 * len(curves), 3.4), squeeze=False)
        colors = {m: f"C{i}" for i, m in enumerate(methods)}
        for ax, (task, per_method) in zip(axes[0], curves.items(), strict=True):
            est_curves = sample_efficiency(per_method, reps=1000, seed=0)
            for method, ce in est_curves.items():
                ax.plot(ce.steps, ce.point, label=method, color=colors[method])
                ax.fill_between(ce.steps, ce.low, ce.high, alpha=0.2, color=colors[method])
            ax.set_title(task)
            ax.set_xlabel("environment steps")
            ax.set_ylim(-0.02, 1.02)
        axes[0][0].set_ylabel("success rate (IQM, 95% CI)")
        axes[0][0].legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot, dpi=110)
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_out/subgoal"))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=40_000, help="environment steps per run")
    p.add_argument("--task-steps", nargs="*", default=[], help="per-task override, TASK=STEPS")
    p.add_argument("--episodes-per-kind", type=int, default=30)
    p.add_argument("--val-episodes", type=int, default=10)
    p.add_argument("--detector-epochs", type=int, default=12)
    p.add_argument("--threshold", type=float, default=0.99)
    p.add_argument("--bonus", type=float, default=1.0, help="SubgoalReward bonus (the value of a subgoal)")
    p.add_argument("--plain", action="store_true", help="potential_based=False: a plain bonus")
    p.add_argument(
        "--k", type=int, default=12, help="critical steps per successful episode (SubgoalReward k)"
    )
    p.add_argument(
        "--subgoal-episodes", type=int, default=10, help="successful episodes per task given to the wrapper"
    )
    p.add_argument(
        "--prepare-only", action="store_true", help="build the data, fit the detector, print the matching"
    )
    p.add_argument(
        "--sweep", nargs="*", type=float, default=[], help="also print the matching at these thresholds"
    )
    p.add_argument("--windows", type=int, default=10, help="success-rate windows per run (curve resolution)")
    p.add_argument(
        "--detector-tasks",
        nargs="+",
        default=list(TASKS),
        choices=list(TASKS),
        help="fit the detector on these tasks' episodes only (default: all tasks together)",
    )
    p.add_argument(
        "--encoder",
        choices=["detector", "pixel", "progress"],
        default="detector",
        help="embed frames for matching with the detector's features (default), the raw pixels "
        "(critwrap.wrappers.subgoal.pixel_encoder) or a learned progress embedding (ProgressEncoder, "
        "fitted per task on its successful training episodes); the detector picks the subgoal steps "
        "either way",
    )
    p.add_argument(
        "--subgoal-steps",
        choices=["detector", "true"],
        default="detector",
        help="with --phases: take the subgoal steps from the detector (default) or, as a diagnostic, the "
        "scripted episodes' true critical steps (TrueSteps; needs --encoder pixel or progress)",
    )
    p.add_argument(
        "--phases",
        action="store_true",
        help="print where the subgoals fire in held-out episodes, by ground-truth phase (then exit)",
    )
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args(argv)
    if args.subgoal_steps == "true" and (not args.phases or args.encoder == "detector"):
        p.error("--subgoal-steps true is a diagnostic of --phases with --encoder pixel or progress")
    torch.set_num_threads(1)
    from critwrap.wrappers.subgoal import pixel_encoder

    encoder = pixel_encoder if args.encoder == "pixel" else None
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        t0 = time.perf_counter()
        data = build_data(args.episodes_per_kind, args.val_episodes)
        det, stats = fit_detector(args.out, {t: data[t] for t in args.detector_tasks}, args.detector_epochs)
        print(f"data + detector: {time.perf_counter() - t0:.0f}s; {json.dumps(stats)}", flush=True)
        per_task_eps: dict[str, list[Any]] = {}
        match_stats = {}
        encoders: dict[str, Any] = {}
        for task, d in data.items():
            if args.encoder == "progress":
                t1 = time.perf_counter()
                enc = ProgressEncoder(d["train"], seed=0)
                encoders[task] = enc
                val_pos = [ep for ep in d["val"] if ep.label == 1]
                corr = float(
                    np.mean(
                        [
                            np.corrcoef(enc.progress(ep.frames), np.arange(len(ep.frames)))[0, 1]
                            for ep in val_pos
                        ]
                    )
                )
                print(
                    f"{task} progress encoder: {time.perf_counter() - t1:.0f}s, train MSE "
                    f"{enc.losses[0]:.4f} -> {enc.losses[-1]:.4f}, held-out successful episodes' "
                    f"corr(progress, t) {corr:.3f}",
                    flush=True,
                )
            else:
                encoders[task] = encoder
            pos = [ep for ep in d["train"] if ep.label == 1][: args.subgoal_episodes]
            neg = [ep for ep in d["train"] if ep.label == 0][: args.subgoal_episodes]
            per_task_eps[task] = pos + neg
            match_stats[task] = matching_stats(det, pos + neg, d["val"], args.threshold, args.k)
        print(f"subgoal matching at threshold {args.threshold}: {json.dumps(match_stats)}", flush=True)
        for thr in args.sweep:
            sweep = {
                task: matching_stats(det, per_task_eps[task], d["val"], thr, args.k)
                for task, d in data.items()
            }
            print(f"  at {thr}: {json.dumps(sweep)}", flush=True)
        if args.phases:
            for task in args.tasks:
                for thr, exclude in itertools.product([args.threshold, *args.sweep], (True, False)):
                    res = phase_alignment(
                        TrueSteps(per_task_eps[task]) if args.subgoal_steps == "true" else det,
                        per_task_eps[task],
                        data[task]["val"],
                        TASKS[task],
                        thr,
                        args.k,
                        encoder=encoders[task],
                        exclude_failed=exclude,
                    )
                    print(f"{task} threshold={thr} exclude_failed={exclude}: {json.dumps(res)}", flush=True)
            return 0
        if args.prepare_only:
            return 0
        meta = {
            "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU",
            "load_at_start": os.getloadavg(),
            "detector": stats,
            "matching": match_stats,
            "threshold": args.threshold,
        }
        (args.out / "meta.json").write_text(json.dumps(meta, indent=2))
        steps_for = {task: args.steps for task in TASKS}
        for item in args.task_steps:
            name, _, value = item.partition("=")
            steps_for[name] = int(value)
        results = args.out / "results.jsonl"
        done = set()
        if results.is_file():
            for line in results.read_text().splitlines():
                r = json.loads(line)
                done.add((r["task"], r["method"], r["seed"]))
        for seed in args.seeds:
            for task in args.tasks:
                for method in args.methods:
                    if method != "ppo" and args.plain:
                        method = f"{method}-plain"
                    if method != "ppo" and args.bonus != 1.0:
                        method = f"{method}(bonus={args.bonus:g})"
                    if method.startswith("ppo+subgoal") and encoders[task] is not None:
                        method = f"{method}(encoder={args.encoder})"
                    if (task, method, seed) in done:
                        continue
                    r = run_one(
                        task,
                        method,
                        seed,
                        steps_for[task],
                        args.out / "dsi",
                        per_task_eps[task],
                        args.threshold,
                        args.k,
                        args.bonus,
                        not args.plain,
                        windows=args.windows,
                        encoder=encoders[task],
                    )
                    r["load"] = os.getloadavg()[0]
                    with results.open("a") as f:
                        f.write(json.dumps(r) + "\n")
                    print(
                        f"{task} {method} seed {seed}: final success {r['final_success']:.2f}, "
                        f"{r['steps_per_s']:.0f} steps/s, curve {np.round(r['curve'], 2).tolist()}",
                        flush=True,
                    )
    print(summarize(args.out, args.markdown, args.plot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
