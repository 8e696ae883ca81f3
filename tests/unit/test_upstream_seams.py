"""The private upstream APIs the pipeline relies on, each used in one place: these tests fail
loudly, with what changed, when an upgrade of Keras, kagglesdk or requests moves them."""

from __future__ import annotations

import inspect

import numpy as np


def test_keras_data_layer_still_switches_backends_inside_tf_data() -> None:
    import keras

    from pipeline.data.augment import DataLayer, RandomAffine

    assert issubclass(DataLayer, keras.layers.Layer), (
        "keras.src DataLayer moved: see pipeline/data/augment.py"
    )
    layer = RandomAffine(0.1, 0.1, 0.1, seed=1)
    assert hasattr(layer, "backend") and hasattr(layer, "_get_seed_generator"), "DataLayer's API changed"


def test_kagglesdk_still_reads_the_endpoint_table_the_sandbox_sets() -> None:
    from kagglesdk import kaggle_env

    table = kaggle_env._env_to_endpoint  # set by pipeline.kaggle_api when PIPELINE_KAGGLE_ENDPOINT is
    original = table[kaggle_env.KaggleEnv.PROD]
    try:
        table[kaggle_env.KaggleEnv.PROD] = "http://127.0.0.1:1"
        assert kaggle_env.get_endpoint(kaggle_env.KaggleEnv.PROD) == "http://127.0.0.1:1"
    finally:
        table[kaggle_env.KaggleEnv.PROD] = original


def test_the_clients_failed_upload_message_is_the_one_the_adapter_checks(monkeypatch, capsys) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "seam-test")  # importing `kaggle` signs in: any name will do
    monkeypatch.setenv("KAGGLE_KEY", "0" * 32)
    from kaggle.api import kaggle_api_extended
    from kaggle.api.kaggle_api_extended import KaggleApi

    from pipeline.kaggle_api import upload_failed_message

    source = inspect.getsource(kaggle_api_extended.KaggleApi.competition_submit)
    expected = upload_failed_message(KaggleApi)
    assert expected in source or "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE" in source, (
        "the official client answers a failed upload otherwise: see pipeline.kaggle_api.upload_failed_message"
    )


def test_requests_adapters_still_take_a_timeout_per_send() -> None:
    import requests.adapters

    parameters = inspect.signature(requests.adapters.HTTPAdapter.send).parameters
    assert "timeout" in parameters and "stream" in parameters, "pipeline.kaggle_api.http_timeouts needs both"


def keep(folder) -> object:
    """A callback that copies the backup folder after the second epoch (Keras deletes it at the end)."""
    import shutil

    import keras

    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: epoch == 1 and shutil.copytree(folder / "backup", folder / "kept")
    )


def test_keras_backup_and_restore_still_writes_the_files_checkpoints_checks(tmp_path) -> None:
    import keras

    from pipeline.fit.checkpoints import METADATA, PREVIOUS, WEIGHTS, backup_callback

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    data = (np.zeros((4, 2)), np.zeros((4, 1)))
    model.fit(*data, epochs=2, verbose=0, callbacks=[backup_callback(tmp_path / "backup"), keep(tmp_path)])
    assert {p.name for p in (tmp_path / "kept").iterdir()} == {
        WEIGHTS,
        METADATA,
        WEIGHTS + PREVIOUS,
        METADATA + PREVIOUS,
    }
