"""The original recipe as one plain script, written the way the seed blog post did it (ported to gymnasium + torch).

Used by ``run.py`` as the end-to-end baseline (run as a subprocess, so its wall time includes the
interpreter start-up and the imports). It imports nothing from rl_lab on purpose.

What it does, step for step like the blog script:

1. 10,000 random games in ONE ``gym.make("CartPole-v1")`` env, ``random.randrange(2)`` actions,
   a per-step Python list append of ``[observation, action]`` (every step is recorded, the first
   one included: the blog paired each action with the previous observation and lost the first
   step), ``env.reset()`` per game, and the game's steps are kept if its score is >= 50 (one-hot
   targets, as the blog built them).
2. The blog's network: 128-256-512-256-128, ReLU, dropout 0.2 (tflearn keep-prob 0.8), softmax
   output; Adam at the recipe's lr 2.33e-4 (the same value rl-lab's default uses), cross-entropy,
   5 epochs, batch 64, with a plain ``DataLoader``; it trains on all the kept data (no validation).
3. 10 games in one env, one forward per step on a batch of 1, argmax; prints the average score
   and the action balance ("choice 0: x%  choice 1: y%").

Usage: ``python experiments/benchmarks/seed_script.py [--seed 0]``
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

LR = 2.33e-4
GOAL_STEPS = 500
SCORE_REQUIREMENT = 50
INITIAL_GAMES = 10_000


def initial_population(env: gym.Env, seed: int, games: int = INITIAL_GAMES) -> tuple[np.ndarray, np.ndarray, int]:
    """Random games; keep every step of the games that scored >= SCORE_REQUIREMENT.

    Returns ``(X, y, steps)``: the kept observations, their one-hot actions, and the steps played.
    """
    training_data = []
    scores = []
    accepted_scores = []
    steps = 0
    env.reset(seed=seed)
    for _ in range(games):
        score = 0.0
        game_memory = []
        observation, _ = env.reset()
        for _ in range(GOAL_STEPS):
            action = random.randrange(0, 2)
            game_memory.append([observation, action])
            observation, reward, terminated, truncated, _ = env.step(action)
            score += reward
            if terminated or truncated:
                break
        steps += len(game_memory)
        if score >= SCORE_REQUIREMENT:
            accepted_scores.append(score)
            for data in game_memory:
                if data[1] == 1:
                    output = [0, 1]
                elif data[1] == 0:
                    output = [1, 0]
                training_data.append([data[0], output])
        scores.append(score)
    print("Average accepted score:", sum(accepted_scores) / max(len(accepted_scores), 1))
    print("Median score for accepted scores:", float(np.median(accepted_scores)) if accepted_scores else None)
    print(Counter(accepted_scores).most_common(5))
    x = np.array([i[0] for i in training_data], dtype=np.float32)
    y = np.array([i[1] for i in training_data])
    return x, y, steps


def neural_network_model(input_size: int) -> nn.Module:
    """The blog's tflearn network, in torch."""
    layers: list[nn.Module] = []
    width = input_size
    for h in (128, 256, 512, 256, 128):
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(0.2)]
        width = h
    layers.append(nn.Linear(width, 2))  # softmax is inside CrossEntropyLoss / argmax
    return nn.Sequential(*layers)


def train_model(
    x: np.ndarray,
    y: np.ndarray,
    model: nn.Module | None = None,
    epochs: int = 5,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    verbose: bool = True,
) -> tuple[nn.Module, dict[str, float]]:
    """Train with a plain ``DataLoader``, Adam and cross-entropy; ``y`` is one-hot (the blog's) or class indices.

    ``model`` defaults to a fresh ``neural_network_model``; with ``validation=(x_val, y_val)`` (class
    indices) the accuracy on it is measured after every epoch. Returns the model and the last epoch's
    figures (``train_loss``, ``train_accuracy``, ``val_accuracy`` when validated).
    """
    model = neural_network_model(input_size=x.shape[1]) if model is None else model
    targets = torch.from_numpy(y.argmax(axis=1) if y.ndim == 2 else y).long()  # one-hot -> class index
    loader = DataLoader(TensorDataset(torch.from_numpy(x), targets), batch_size=64, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    figures: dict[str, float] = {}
    for epoch in range(epochs):
        model.train()
        total, correct, n = 0.0, 0, 0
        for xb, yb in loader:
            optimizer.zero_grad()
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
            n += len(yb)
        figures = {"train_loss": total / n, "train_accuracy": correct / n}
        if validation is not None:
            model.eval()
            with torch.no_grad():
                xv, yv = torch.from_numpy(validation[0]), torch.from_numpy(validation[1])
                figures["val_accuracy"] = (model(xv).argmax(1) == yv).float().mean().item()
        if verbose:
            print(f"epoch {epoch + 1}: loss {total / n:.4f}  acc {correct / n:.3f}")
    return model, figures


def play(env: gym.Env, model: nn.Module, games: int = 10, seed: int | None = None) -> dict[str, float]:
    """Greedy games in one env, one forward per step on a batch of 1; prints the score and the balance.

    ``seed`` seeds the first reset (None: the env continues its own stream). Returns the mean and the
    lowest score and the steps played.
    """
    model.eval()
    scores = []
    choices = []
    with torch.no_grad():
        for game in range(games):
            score = 0.0
            game_memory = []
            observation, _ = env.reset(seed=seed if game == 0 else None)
            for _ in range(GOAL_STEPS):
                action = int(model(torch.from_numpy(observation).reshape(1, -1)).argmax(1).item())
                choices.append(action)
                new_observation, reward, terminated, truncated, _ = env.step(action)
                game_memory.append([new_observation, action])
                observation = new_observation
                score += reward
                if terminated or truncated:
                    break
            scores.append(score)
    print("Average Score:", sum(scores) / len(scores))
    share0, share1 = choices.count(0) / len(choices), choices.count(1) / len(choices)
    print(f"choice 0: {100 * share0:.1f}%  choice 1: {100 * share1:.1f}%")
    return {"score_mean": sum(scores) / len(scores), "score_min": min(scores), "steps": len(choices)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    env = gym.make("CartPole-v1")
    x, y, _ = initial_population(env, args.seed)
    print(f"training samples: {len(x)}  torch threads: {torch.get_num_threads()}")
    model, _ = train_model(x, y)
    play(env, model)
    env.close()


if __name__ == "__main__":
    main()
