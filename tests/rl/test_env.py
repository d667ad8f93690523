"""StreamingEmotionEnv and LabelEnv: both env checkers, exact scripted returns, seeding,
vectorisation, and a DQN that learns when waiting clearly pays."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import DQN
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from ser.inference.early import TERMINATE, WAIT, ObservationSpec, policy_decisions
from ser.inference.streaming import UtteranceStream
from ser.rl.env import LabelEnv, Reward, StreamingEmotionEnv
from ser.rl.evaluate import (
    baseline_table,
    confidence_decisions,
    falling_threshold_decisions,
    fit_falling_thresholds,
    fraction_decisions,
    settled_decisions,
)
from ser.rl.train import reward_targets


def random_stream(rng: np.random.Generator, chunks: int, label: int) -> UtteranceStream:
    post = rng.dirichlet(np.ones(4), size=chunks).astype(np.float32)
    hidden = rng.uniform(-1, 1, size=(chunks, 6)).astype(np.float32)
    return UtteranceStream(post, hidden, label, duration_s=chunks * 0.25 - 0.1, chunk_s=0.25)


def late_stream(chunks: int, label: int) -> UtteranceStream:
    """Wrong (and confident) until the last chunk, right at the end: waiting pays."""
    post = np.full((chunks, 4), 0.02, dtype=np.float32)
    post[:-1, (label + 1) % 4] = 0.94
    post[-1, label] = 0.94
    return UtteranceStream(post, np.zeros((chunks, 6), np.float32), label, chunks * 0.25, 0.25)


@pytest.fixture
def streams() -> list[UtteranceStream]:
    rng = np.random.default_rng(0)
    return [random_stream(rng, int(rng.integers(1, 12)), i % 4) for i in range(20)]


@pytest.mark.parametrize("hidden", [False, True])
def test_env_passes_gymnasium_and_sb3_checkers(streams, hidden) -> None:
    env = StreamingEmotionEnv(streams, observation=ObservationSpec(hidden=hidden))
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)
    assert env.observation_space.shape == (4 + 6 * hidden + 4,)


def test_label_env_passes_checkers(streams) -> None:
    obs = np.stack([s.posteriors[-1] for s in streams])
    env = LabelEnv(obs, [s.label for s in streams], num_classes=4)
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)
    _, info = env.reset(options={"index": 3})
    assert env.step(info["label"])[1] == 1.0
    assert env.step((info["label"] + 1) % 4)[1] == -0.1


def run_episode(env: StreamingEmotionEnv, index: int, action: int) -> tuple[float, dict]:
    env.reset(seed=0, options={"index": index})
    total, done = 0.0, False
    while not done:
        _, reward, done, truncated, info = env.step(action)
        assert not truncated
        total += reward
    return total, info


def test_scripted_policies_earn_exactly_the_expected_returns(streams) -> None:
    reward = Reward(correct=1.0, wrong=-0.5, wait_cost=0.03)
    env = StreamingEmotionEnv(streams, reward=reward)
    for i, s in enumerate(streams):
        first = int(np.argmax(s.posteriors[0]))
        last = int(np.argmax(s.posteriors[-1]))
        total, info = run_episode(env, i, TERMINATE)
        assert total == pytest.approx(1.0 if first == s.label else -0.5)
        assert info["chunks"] == 1
        total, info = run_episode(env, i, WAIT)
        expected = -0.03 * (s.chunks - 1) + (1.0 if last == s.label else -0.5)
        assert total == pytest.approx(expected)
        assert info["chunks"] == s.chunks
        assert info["fraction"] == pytest.approx(1.0)


def test_full_prediction_target_rewards_agreeing_with_the_whole_utterance(streams) -> None:
    reward = Reward(correct=1.0, wrong=-0.5, wait_cost=0.03)
    targets = reward_targets(streams, "full_prediction")
    assert reward_targets(streams, "label") is streams
    env = StreamingEmotionEnv(targets, reward=reward)
    changed = 0
    for i, s in enumerate(streams):
        last = int(np.argmax(s.posteriors[-1]))
        changed += last != s.label
        assert targets[i].label == last and np.array_equal(targets[i].posteriors, s.posteriors)
        total, _ = run_episode(env, i, WAIT)  # the end always agrees with itself
        assert total == pytest.approx(-0.03 * (s.chunks - 1) + 1.0)
        total, _ = run_episode(env, i, TERMINATE)
        assert total == pytest.approx(1.0 if int(np.argmax(s.posteriors[0])) == last else -0.5)
    assert changed  # the fixture has streams whose final answer is wrong


def test_observation_tracks_what_was_heard(streams) -> None:
    s = max(streams, key=lambda x: x.chunks)
    env = StreamingEmotionEnv([s])
    obs, _ = env.reset(seed=1)
    np.testing.assert_allclose(obs[:4], s.posteriors[0], atol=1e-6)
    assert obs[-1] == 0.0  # no change before a second chunk
    obs, *_ = env.step(WAIT)
    np.testing.assert_allclose(obs[:4], s.posteriors[1], atol=1e-6)
    assert obs[4] == pytest.approx(2 * 0.25 / s.duration_s)  # fraction heard
    assert obs[5] == pytest.approx(0.5)  # seconds heard
    assert obs[-1] == pytest.approx(np.abs(s.posteriors[1] - s.posteriors[0]).sum(), abs=1e-6)


def test_sorted_posterior_hides_the_class_but_keeps_the_confidence(streams) -> None:
    s = max(streams, key=lambda x: x.chunks)
    spec = ObservationSpec(sorted_posterior=True)
    by_class = ObservationSpec().build(s, np.arange(1, s.chunks + 1))
    ranked = spec.build(s, np.arange(1, s.chunks + 1))
    np.testing.assert_allclose(ranked[:, :4], -np.sort(-s.posteriors, axis=1), atol=1e-6)
    np.testing.assert_allclose(ranked[:, 4:], by_class[:, 4:], atol=1e-6)  # extras unchanged
    # Relabelling the classes changes nothing the agent sees.
    swapped = UtteranceStream(s.posteriors[:, ::-1].copy(), s.hidden, 0, s.duration_s, s.chunk_s)
    np.testing.assert_allclose(spec.build(swapped, np.array(3)), ranked[2], atol=1e-6)
    gym_check_env(StreamingEmotionEnv(streams, observation=spec), skip_render_check=True)


def test_seeded_resets_are_deterministic(streams) -> None:
    def sources(seed: int) -> list[int]:
        env = StreamingEmotionEnv(streams)
        env.reset(seed=seed)
        return [env.reset()[1]["label"] * 100 + env._stream.chunks for _ in range(15)]

    assert sources(7) == sources(7)
    assert sources(7) != sources(8)


def test_make_vec_env_runs_several_envs(streams) -> None:
    vec = make_vec_env(StreamingEmotionEnv, n_envs=3, seed=0, env_kwargs={"streams": streams})
    obs = vec.reset()
    assert obs.shape == (3, *vec.observation_space.shape)
    _, _, dones, _ = vec.step(np.array([TERMINATE, WAIT, TERMINATE]))
    assert dones[0] and dones[2]


def test_baselines_decide_where_they_should() -> None:
    s = late_stream(8, label=2)
    assert list(fraction_decisions([s], 0.5)) == [4]
    assert list(confidence_decisions([s], 0.9)) == [1]  # confidently wrong at once
    assert list(confidence_decisions([s], 0.99)) == [8]  # never that sure: the end
    assert list(settled_decisions([s])) == [8]  # changes its mind at the last chunk
    flips = UtteranceStream(s.posteriors[[0, 7, 0, 7, 7, 7, 7, 7]], s.hidden, 2, 2.0, 0.25)
    assert list(settled_decisions([flips, late_stream(1, 0)])) == [4, 1]
    table = baseline_table([s])
    assert table.loc[table.strategy == "full", "wa"].item() == 1.0
    assert table.loc[table.strategy == "fixed", "wa"].tolist() == [0.0, 0.0, 0.0]
    assert table.loc[table.strategy == "settled", ["wa", "fraction_mean"]].values.tolist() == [
        [1.0, 1.0]
    ]
    spec = ObservationSpec()
    assert list(policy_decisions(lambda o: np.full(len(o), WAIT), [s], spec)) == [8]


def confident_stream(top: list[float], label: int) -> UtteranceStream:
    """Right all along, with the top posterior `top[k]` after chunk k + 1."""
    post = np.array([[(1 - t) / 3] * 4 for t in top], dtype=np.float32)
    post[:, label] = top
    return UtteranceStream(post, np.zeros((len(top), 6), np.float32), label, len(top) * 0.25, 0.25)


def test_falling_threshold_asks_for_less_the_more_is_heard() -> None:
    s = confident_stream([0.5, 0.6, 0.7, 0.8], label=1)  # heard: 25, 50, 75, 100 %
    assert list(falling_threshold_decisions([s], 0.9, 0.0)) == [4]  # never that sure: the end
    assert list(falling_threshold_decisions([s], 0.9, 0.4)) == [3]  # 0.7 >= 0.9 - 0.4 * 0.75
    assert list(falling_threshold_decisions([s], 0.5, 0.0)) == [1]


def test_fitted_threshold_keeps_to_its_budget() -> None:
    # Sure and right at once, or less sure and wrong until the end: a threshold between the
    # two confidences (0.97 and 0.94) is right everywhere, hearing 56 % of the speech on average.
    streams = [confident_stream([0.97] * 8, k % 4) for k in range(4)]
    streams += [late_stream(8, k % 4) for k in range(4)]
    fitted = fit_falling_thresholds(streams, budgets=(0.0, 0.5, 0.6))
    assert 0.0 not in fitted  # no rule hears nothing
    heard = {b: falling_threshold_decisions(streams, *rule) for b, rule in fitted.items()}
    assert list(heard[0.6]) == [1] * 4 + [8] * 4
    # within 50 % the late streams must be cut short, where they are wrong
    assert np.mean(heard[0.5] / 8) <= 0.5
    assert list(heard[0.5][:4]) == [1] * 4
    table = baseline_table(streams, fit_on=streams)
    fitted_rows = table[table.strategy == "fitted"].set_index("setting")
    assert fitted_rows.loc[0.6, "wa"] == 1.0
    assert fitted_rows.loc[0.6, "fraction_mean"] == pytest.approx((1 / 8 + 1) / 2)
    assert fitted_rows.loc[0.5, "wa"] == 0.5
    assert "fitted" not in set(baseline_table(streams).strategy)  # nothing to fit on


def test_dqn_learns_to_wait_when_waiting_pays() -> None:
    streams = [late_stream(int(k), label=k % 4) for k in range(3, 9)]
    env = StreamingEmotionEnv(streams, reward=Reward(1.0, -1.0, wait_cost=0.01))
    model = DQN(
        "MlpPolicy",
        env,
        learning_rate=1e-3,
        learning_starts=200,
        exploration_fraction=0.3,
        target_update_interval=200,
        policy_kwargs={"net_arch": [32]},
        seed=0,
    )
    before, _ = evaluate_policy(model, env, n_eval_episodes=30)
    model.learn(total_timesteps=4000)
    after, _ = evaluate_policy(model, env, n_eval_episodes=30)
    assert after > before
    assert after > 0.8  # waits to the end: +1 minus a few waits
