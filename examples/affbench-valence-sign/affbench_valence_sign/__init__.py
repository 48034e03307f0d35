# affbench_valence_sign/__init__.py
"""A task read from the VA annotations, "is the valence positive?", with a metric of its own."""
import numpy as np
import torch
import torch.nn.functional as F

import affbench
from affbench.frame_stats import TaskScoring
from affbench.metrics import class_counts
from affbench.stages.evaluate import moving_average
from affbench.task_contract import check_metric_names


def balanced_accuracy_of_counts(counts):
    """Mean recall of the classes that have frames, from (tp, fp, fn) counts [..., classes, 3]."""
    tp, fn = counts[..., 0], counts[..., 2]
    present = tp + fn > 0
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=present)
    return recall.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def balanced_accuracy(pred, target):
    """Balanced accuracy of class indices [N] (sklearn's balanced_accuracy_score)."""
    classes = int(max(np.max(pred), np.max(target))) + 1
    return float(balanced_accuracy_of_counts(class_counts(pred, target, classes)))


class ValenceSignTask(torch.nn.Module):
    """Two classes, negative (valence <= 0) and positive (valence > 0); cross-entropy on two logits."""

    name = "valence_sign"
    label_names = ("negative", "positive")
    out_dim = 2  # one logit per class
    label_dim = 1  # the class index
    annotation = "va"  # the dataset's VA annotation set, through derive_labels
    primary_metric = "balanced_accuracy"
    metric_names = ("balanced_accuracy",)  # the registered metric below, reported beside `metrics`
    prediction_columns = ("valence_sign",)
    submission_columns = ("valence_sign",)
    integer_values = True
    output_kind = "classes"  # its report plot: a confusion matrix
    report_columns = (("balanced_accuracy", "Valence sign"),)
    detail_columns = (("balanced_accuracy", "Valence sign bal. acc."), ("accuracy", "Valence sign acc."))
    metric_label = "balanced accuracy (valence sign)"

    def __init__(self, *, metrics=None):
        super().__init__()
        self.extra_metrics = check_metric_names(metrics, f"task '{self.name}'")

    def derive_labels(self, labels, valid):
        """VA labels [n, 2] -> the class [n, 1]; a frame without a valid VA label stays invalid (-1)."""
        positive = (labels[:, :1] > 0).astype(np.float32)
        return np.where(valid[:, None], positive, -1.0), valid

    def loss(self, pred, target, valid=None):
        pred, target = pred.reshape(-1, self.out_dim), target.reshape(-1).to(pred.device)
        keep = (target >= 0) if valid is None else valid.reshape(-1).to(pred.device, torch.bool)
        if not bool(keep.any()):
            return pred.sum() * 0.0  # no valid frame: no loss, but a gradient
        return F.cross_entropy(pred[keep].float(), target[keep].long())

    def probabilities(self, pred):
        return torch.as_tensor(pred).float().softmax(-1)

    def postprocess(self, pred):
        return torch.as_tensor(pred).argmax(-1)

    def submission_values(self, raw, window):
        """The class probabilities averaged over a centred window of `window` frames, then the likelier class."""
        prob = self.probabilities(torch.from_numpy(raw)).numpy()
        return moving_average(prob, window).argmax(axis=1).reshape(-1, 1)

    def metrics(self, values, target, valid=None):
        """Accuracy over the valid rows (affbench adds the registered balanced_accuracy)."""
        v, t = np.asarray(values).reshape(-1), np.asarray(target).reshape(-1)
        keep = t >= 0 if valid is None else np.asarray(valid, bool)
        return {"accuracy": float(np.mean(v[keep] == t[keep]))}

    @property
    def scoring(self):
        """tp/fp/fn per class add up over videos: the report's bootstrap rescores runs from them."""
        return TaskScoring(lambda p, t: class_counts(p[:, 0], t[:, 0], 2),
                           {"balanced_accuracy": balanced_accuracy_of_counts,
                            "accuracy": lambda s: s[..., 0].sum(axis=-1) / (s[..., 0] + s[..., 2]).sum(axis=-1)})


@affbench.hookimpl
def affbench_register_tasks(register):
    register("valence_sign", ValenceSignTask)


def balanced_accuracy_metric():
    """Balanced accuracy: the mean recall of the classes present in the target."""
    return balanced_accuracy


@affbench.hookimpl
def affbench_register_metrics(register):
    register("balanced_accuracy", balanced_accuracy_metric)
