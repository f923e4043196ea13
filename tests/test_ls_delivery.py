"""Delivery keys in predictions: what a retried write-back looks for among Label Studio's predictions."""

from samiam.labelstudio.delivery import delivery_key, find_delivered, key_of, stamp

PREDICTION = {"result": [{"id": "aB3dE6gH9k", "type": "brushlabels"}, {"id": "x", "type": "brushlabels"}],
              "score": 0.5, "model_version": "v1"}


def test_a_stamped_prediction_carries_its_key_in_every_region_id():
    key = delivery_key("batch-1", 7)
    stamped = stamp(PREDICTION, key)
    assert [r["id"] for r in stamped["result"]] == [f"{key}-0", f"{key}-1"]
    assert key_of(stamped) == key and stamped["score"] == 0.5
    assert PREDICTION["result"][0]["id"] == "aB3dE6gH9k"  # the input is left alone


def test_keys_differ_per_batch_and_task_and_unstamped_predictions_carry_none():
    assert len({delivery_key("b1", 1), delivery_key("b1", 2), delivery_key("b2", 1)}) == 3
    assert key_of(PREDICTION) is None and key_of({"result": []}) is None and key_of({"result": None}) is None


def test_find_delivered_returns_the_id_of_the_prediction_with_the_key():
    key = delivery_key("b", 3)
    stored = [{"id": 11, **PREDICTION}, {"id": 12, **stamp(PREDICTION, delivery_key("b", 4))},
              {"id": 13, **stamp(PREDICTION, key)}, {"id": 14, "result": None}]
    assert find_delivered(stored, key) == 13
    assert find_delivered(stored[:2], key) is None
