"""The published model as an ensemble: members' seeds, the averaging layer, and `--members` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from trainer.config import ModelConfig, TrainConfig
from trainer.deskew import deskew
from trainer.model import MeanProbabilityLogits, build_ensemble, build_model, member_name, with_view
from trainer.train import ConfigError, member_seed, member_view, validate_config

SMALL = ModelConfig(stem_filters=8, stage_filters=(8, 8, 8))


def mnist_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))


def test_the_default_run_is_four_deskewed_members_of_thirteen_epochs():
    default = TrainConfig()
    assert (default.members, default.epochs) == (4, 13)
    assert [member_view(default, index) for index in range(default.members)] == ["deskewed"] * 4


def test_member_views_cycle_over_the_members():
    config = TrainConfig(members=5, member_views=("plain", "deskewed"))
    assert [member_view(config, index) for index in range(5)] == ["plain", "deskewed", "plain", "deskewed", "plain"]


@pytest.mark.parametrize("views", ["", "plain,,deskewed", "sideways", "plain,Deskewed"])
def test_unknown_member_views_are_refused_with_one_line(views):
    result = mnist_train("--member-views", views)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"argument --member-views: {views!r} is not a comma-separated list of plain, deskewed" in result.stderr


@pytest.mark.parametrize("views", [(), ("plain", "sideways")])
def test_the_library_refuses_unknown_or_no_member_views(views):
    with pytest.raises(ConfigError, match="member views"):
        validate_config(TrainConfig(member_views=views), n_train=1000)


def test_a_deskewed_member_deskews_what_it_is_sent_and_a_plain_one_is_the_network():
    network = build_model(SMALL, name="member1_network")
    assert with_view(network, "plain", "member1") is network
    member = with_view(network, "deskewed", "member1")
    assert member.name == "member1" and member.count_params() == network.count_params()  # the view has no weights
    images = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(member(images).numpy(), network(deskew(images)).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown view 'sideways'"):
        with_view(network, "sideways", "member1")


def test_the_first_member_has_the_runs_seed_and_no_two_runs_share_a_member_seed():
    assert member_seed(42, 0) == 42
    assert member_seed(42, 1) == member_seed(42, 1)  # derived, not drawn
    seeds = [member_seed(seed, index) for seed in range(100) for index in range(3)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= seed < 2**31 for seed in seeds)


def test_an_ensemble_of_one_is_the_network_itself():
    member = build_model(SMALL)
    assert build_ensemble([member]) is member


def test_the_ensembles_probabilities_are_the_mean_of_its_members():
    members = [build_model(SMALL, name=member_name(index)) for index in range(3)]  # each its own random weights
    ensemble = build_ensemble(members)
    images = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    expected = np.mean([tf.nn.softmax(member(images)).numpy() for member in members], axis=0)
    np.testing.assert_allclose(tf.nn.softmax(ensemble(images)).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert ensemble.count_params() == 3 * members[0].count_params()
    assert [layer.name for layer in ensemble.layers[1:4]] == ["member1", "member2", "member3"]


def test_confident_members_that_disagree_give_finite_logits_and_an_even_split():
    logits = MeanProbabilityLogits()([tf.constant([[900.0, -900.0, 0.0]]), tf.constant([[-900.0, 900.0, 0.0]])])
    assert np.all(np.isfinite(logits.numpy()))
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), [[0.5, 0.5, 0.0]], atol=1e-6)


def test_members_zero_is_refused_with_one_line():
    result = mnist_train("--members", "0")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "argument --members: '0' must be at least 1" in result.stderr


def small_run(store, mnist_npz, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """A real `mnist-train` on a few images, batches of 64; its output and its version 1's metrics.json."""
    result = mnist_train("--data", str(mnist_npz), "--model-base-path", str(store), "--register", "never",
                         "--batch-size", "64", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    return result, json.loads((store / "1" / "assets.extra" / "metrics.json").read_text())


def test_a_two_member_run_publishes_the_ensemble_it_measured(tmp_path, mnist_npz):
    store = tmp_path / "mnist"
    result, metrics = small_run(store, mnist_npz, "--train-limit", "512", "--epochs", "2", "--test-limit", "300",
                                "--members", "2", "--member-views", "plain,deskewed")
    assert "training 2 members one after the other on 512 images, each for 2 epoch(s) of 8 steps" in result.stdout
    member_lines = [line for line in result.stdout.splitlines() if line.startswith("member ")]
    assert member_lines[0] == "member 1 of 2: seed 42, plain view"
    assert member_lines[2] == f"member 2 of 2: seed {member_seed(42, 1)}, deskewed view"
    assert metrics["members"] == 2 and metrics["epochs"] == 2 and len(metrics["member_test_accuracy"]) == 2
    assert metrics["member_views"] == ["plain", "deskewed"]
    assert len(metrics["history"]["loss"]) == 4  # member after member
    # What is served is what was measured: the SavedModel's digits score metrics.json's accuracy.
    with np.load(mnist_npz) as npz:
        images, labels = npz["x_test"][:300, :, :, None].astype(np.float32) / 255.0, npz["y_test"][:300]
    serve = tf.saved_model.load(str(store / "1")).signatures["serving_default"]
    # The served model deskews for its second member itself: a client sends every member the same image.
    graph = serve.graph.as_graph_def()
    ops = {node.op for node in [*graph.node, *(n for function in graph.library.function for n in function.node_def)]}
    assert "ImageProjectiveTransformV3" in ops
    out = serve(images=tf.constant(images))
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(out["digit"].numpy() == labels) == pytest.approx(metrics["test_accuracy"])


def test_a_one_member_run_is_the_single_network(tmp_path, mnist_npz):
    result, metrics = small_run(tmp_path / "mnist", mnist_npz, "--train-limit", "256", "--epochs", "1",
                                "--test-limit", "200", "--members", "1", "--member-views", "plain")
    assert "training on 256 images for 1 epoch(s) of 4 steps, batch 64, plain view" in result.stdout
    assert "member " not in result.stdout
    assert metrics["members"] == 1 and metrics["member_test_accuracy"] == [metrics["test_accuracy"]]
    assert metrics["member_views"] == ["plain"]
