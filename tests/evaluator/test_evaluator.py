"""Evaluator, BaseMetric and the Accuracy metric."""
import pytest
import torch

from raytrainer.evaluator import Accuracy, BaseMetric, DumpResults, Evaluator


def test_accuracy_topk_from_scores_and_labels():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = torch.tensor([1, 1, 0, 0])
    evaluator = Evaluator(dict(type="Accuracy", topk=(1, 2)))
    evaluator.process((scores, labels))
    assert evaluator.evaluate(4) == {"accuracy/top1": 50.0, "accuracy/top2": 75.0}


def test_accuracy_from_per_sample_dicts_and_padding_dropped():
    metric = Accuracy(prefix="acc")
    samples = [{"pred_score": torch.tensor([0.9, 0.1]), "gt_label": torch.tensor(0)},
               {"pred_label": torch.tensor(1), "gt_label": 0}]
    metric.process(None, samples[:1])
    metric.process(None, [{"pred_score": torch.tensor([0.2, 0.8]), "gt_label": 0}])
    # size=1: the second result is sampler padding and must not count
    assert metric.evaluate(1) == {"acc/top1": 100.0}
    assert metric.results == []


def test_accuracy_rejects_unusable_predictions():
    with pytest.raises(TypeError, match="Accuracy expects"):
        Accuracy().process(None, ["cat", "dog"])
    with pytest.raises(ValueError, match="topk must be positive"):
        Accuracy(topk=0)


def test_duplicate_metric_names_are_an_error():
    evaluator = Evaluator([dict(type="Accuracy"), dict(type="Accuracy")])
    evaluator.process((torch.eye(2), torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="two metrics both produce 'accuracy/top1'"):
        evaluator.evaluate(2)


class CountMetric(BaseMetric):
    default_prefix = "count"

    def process(self, data_batch, data_samples):
        self.results.extend(int(x) for x in data_samples)

    def compute_metrics(self, results):
        return {"sum": sum(results), "n": len(results)}


def test_offline_evaluate_chunks_and_dataset_meta():
    evaluator = Evaluator(CountMetric())
    evaluator.dataset_meta = {"classes": ("a", "b")}
    assert evaluator.metrics[0].dataset_meta == {"classes": ("a", "b")}
    assert evaluator.offline_evaluate([1, 2, 3, 4, 5], chunk_size=2) == {
        "count/sum": 15, "count/n": 5}
    with pytest.raises(ValueError, match="data_samples has 2 entries but data has 3"):
        evaluator.offline_evaluate([1, 2], data=[0, 0, 0])


def test_dump_results_writes_a_weights_only_file(tmp_path):
    out = tmp_path / "preds.pth"
    metric = DumpResults(str(out))
    metric.process(None, [torch.tensor([1.0, 2.0]), torch.tensor([3.0])])
    assert metric.evaluate(2) == {}
    loaded = torch.load(out, weights_only=True)
    assert [t.tolist() for t in loaded] == [[1.0, 2.0], [3.0]]
    with pytest.raises(ValueError, match="must end with .pt or .pth"):
        DumpResults(str(tmp_path / "x.pkl"))
