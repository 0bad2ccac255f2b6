"""BackpropClassifier: a scikit-learn classifier whose training runs on a backprop server.

    from backprop_client.sklearn import BackpropClassifier
    clf = BackpropClassifier(address="127.0.0.1:50051").fit(X_train, y_train)
    clf.score(X_test, y_test)

`fit` creates a model on the server, uploads X and y as a dataset next to it (routed to
the model's replica), trains it with the server's Fit (the whole loop runs server-side:
one upload, no round trip per step), and deletes the dataset. The fitted estimator
holds the server model (`model_id_`); predictions go through Forward.

Server models are sessions in server memory, so they are released: `close()` (or a
`with` block) deletes the model at once, and so does garbage collection (`__del__`)
for an estimator that is dropped, such as the clones cross_val_score and GridSearchCV
make. Pickling (and copy.deepcopy, joblib) carries the model's checkpoint (ExportModel)
and the copy imports it into a new model on first use; `save`/`load` write and read
the same checkpoint in a file.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

try:
    from scipy.special import expit, softmax
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as missing:  # say which extra brings it
    raise ImportError(
        "backprop_client.sklearn needs scikit-learn >= 1.6: "
        "pip install 'backprop-client[sklearn]'") from missing

from . import errors
from ._proto import backprop_pb2 as pb
from .client import Client

__all__ = ["BackpropClassifier"]

# One Client per connection setting per process, shared by every estimator: many
# estimators (cross-validation folds, a grid's candidates) then share one HTTP/2
# connection instead of opening one each, and an estimator's __dict__ holds no
# channel (which could not be pickled). Keyed by pid so a forked worker makes its own.
_CLIENTS: dict = {}

# FitRequest.progress_every beyond any fit's length: a progress event at epoch ends only.
_EPOCH_ENDS = (1 << 32) - 1

# Rows per Forward when predicting, so a large X stays far below the message limit.
_PREDICT_BYTES = 16 << 20


def _shared_client(address, token, tls_ca, tls_cert, tls_key, timeout) -> Client:
    key = (os.getpid(), address, token, tls_ca, tls_cert, tls_key, timeout)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = Client(address, token, tls_ca=tls_ca, tls_cert=tls_cert,
                                        tls_key=tls_key, timeout=timeout)
    return client


def _has_probabilities(estimator) -> bool:
    """predict_proba exists for the softmax loss only, as sklearn's SVC without
    probability=True has none: an SVM's scores are margins, not log-probabilities."""
    if estimator.loss != "softmax":
        raise AttributeError(
            f"predict_proba is not available with loss={estimator.loss!r}: the multiclass "
            "SVM's scores are margins, not probabilities; use decision_function, or "
            "loss='softmax'")
    return True


class BackpropClassifier(ClassifierMixin, BaseEstimator):
    """A fully connected network (CS231n lecture 4) trained on a backprop server.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Units of each hidden layer; () is a linear classifier.
    activation : {"relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu"}, default "relu"
    loss : {"softmax", "svm"}, default "softmax"
        Softmax cross-entropy or the multiclass SVM (hinge); only softmax has
        predict_proba.
    l2 : float, default 1e-4
        λ of the L2 term λ·ΣW² (weights only).
    optimizer : {"adam", "adamw", "sgd", "momentum", "rmsprop"}, default "adam"
    learning_rate : float, default 1e-3
    batch_size : int, default 64
        Rows per step (at most the training rows).
    epochs : int, default 30
    seed : int, default 0
        Seeds the initial parameters and the fit's batches: the same seed and data
        give bit-identical models.
    early_stopping : bool, default False
        Hold out `validation_fraction` of the rows and stop after `n_iter_no_change`
        epochs without a better validation loss, keeping the best epoch's model.
    validation_fraction : float, default 0.1
        With early_stopping, the held-out fraction (unused otherwise).
    n_iter_no_change : int, default 5
    dtype : {"float32", "float64"}, default "float32"
        The model's dtype on the server.
    address : str or None
        The server, host:port; None = $BACKPROP_ADDRESS, else 127.0.0.1:50051.
    token, tls_ca, tls_cert, tls_key, timeout
        As for backprop_client.Client.
    name : str or None, default None
        The server model's name (ModelMetadata), set when fit (or a first partial_fit)
        creates it, so it can be found again: `Client.list_models(name=...)`.
    labels : dict of str to str, or None, default None
        The server model's labels, likewise (`list_models(labels=...)`); a clone (cross
        validation, a grid search) gives its model the same ones.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_ (from a DataFrame), model_id_ (the
    server model), n_iter_ (epochs run), loss_curve_ (mean loss per epoch),
    validation_scores_ (validation accuracy per epoch, with early_stopping).
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        loss="softmax",
        l2=1e-4,
        optimizer="adam",
        learning_rate=1e-3,
        batch_size=64,
        epochs=30,
        seed=0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        dtype="float32",
        address=None,
        token=None,
        tls_ca=None,
        tls_cert=None,
        tls_key=None,
        timeout=60.0,
        name=None,
        labels=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.l2 = l2
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.address = address
        self.token = token
        self.tls_ca = tls_ca
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.timeout = timeout
        self.name = name
        self.labels = labels

    # -- the server ---------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The (shared) Client for this estimator's connection settings."""
        address = self.address or os.environ.get("BACKPROP_ADDRESS") or "127.0.0.1:50051"
        return _shared_client(address, self.token, self.tls_ca, self.tls_cert, self.tls_key,
                              self.timeout)

    def _spec(self, n_features: int, n_classes: int) -> dict:
        if self.loss not in ("softmax", "svm"):
            raise ValueError(f"loss must be 'softmax' or 'svm', got {self.loss!r}")
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if np.isscalar(hidden) else list(hidden)
        return dict(
            input_dim=n_features, num_classes=n_classes, hidden=[int(h) for h in hidden],
            activation=self.activation, loss=self.loss, l2=float(self.l2),
            optimizer=self.optimizer, learning_rate=float(self.learning_rate),
            seed=int(self.seed), dtype=self.dtype,
        )

    def _create(self, n_features: int, n_classes: int) -> str:
        """A new server model for this estimator, with its name and labels."""
        return self.client.create_model(self._spec(n_features, n_classes), name=self.name,
                                        labels=self.labels).model_id

    def _model(self) -> str:
        """The server model's id; a copy made by unpickling imports its checkpoint now."""
        check_is_fitted(self, "classes_")
        if getattr(self, "model_id_", None) is None:
            checkpoint = self.__dict__.get("_checkpoint")
            if checkpoint is None:
                raise NotFittedError(
                    "this estimator's server model was released by close(); fit it again")
            self.model_id_ = self.client.import_model(checkpoint).model_id
            del self.__dict__["_checkpoint"]
        return self.model_id_

    def close(self) -> None:
        """Deletes the server model now (the estimator then needs fit again). Called by
        `__del__` and by leaving a `with` block."""
        model_id = self.__dict__.get("model_id_")
        self.__dict__.pop("_checkpoint", None)
        if "classes_" in self.__dict__:
            self.model_id_ = None  # fitted, but released: predict says to fit again
        else:
            self.__dict__.pop("model_id_", None)
        if model_id:
            try:
                self.client.delete_model(model_id)
            except errors.NotFound:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit, or the server gone: nothing to free
            pass

    def __getstate__(self):
        state = super().__getstate__()  # BaseEstimator's: a copy, with the sklearn version
        model_id = state.pop("model_id_", None)
        if model_id:
            state["_checkpoint"] = self.client.export_model(model_id)
        if "classes_" in state:
            state["model_id_"] = None
        return state

    def __setstate__(self, state):
        super().__setstate__(state)

    # -- training -----------------------------------------------------------------------

    def _check_X(self, X, reset: bool, y="no_validation"):
        """X (and y) validated as sklearn expects, X in the model's dtype."""
        kind = np.float64 if self.dtype in ("float64", np.float64) else np.float32
        if isinstance(y, str) and y == "no_validation":
            return validate_data(self, X, reset=reset, dtype=(np.float64, np.float32)).astype(
                kind, copy=False)
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        return X.astype(kind, copy=False), y

    def fit(self, X, y):
        """Trains a new server model on X, y (the previous one, if any, is deleted)."""
        X, y = self._check_X(X, reset=True, y=y)
        classes, labels = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                "BackpropClassifier needs samples of at least 2 classes in the data, but "
                f"the data contains only one class: {classes[0]!r}")
        self.close()
        client = self.client
        self.classes_ = classes
        self.model_id_ = self._create(X.shape[1], len(classes))
        held_out = round(len(X) * self.validation_fraction) if self.early_stopping else 0
        # Progress only at each epoch's end: the estimator reads nothing in between.
        fields = dict(epochs=int(self.epochs), seed=int(self.seed), progress_every=_EPOCH_ENDS,
                      batch_size=max(1, min(int(self.batch_size), len(X) - held_out)))
        if self.early_stopping:
            if held_out < 1 or held_out >= len(X):
                raise ValueError(
                    f"early_stopping needs validation_fraction={self.validation_fraction} "
                    f"of the {len(X)} rows to be at least one row and leave one to train on")
            fields.update(validation_fraction=float(self.validation_fraction),
                          early_stopping={"patience": int(self.n_iter_no_change)})
        try:
            dataset = client.upload_dataset(X, labels, name="BackpropClassifier.fit",
                                            next_to=self.model_id_)
            try:
                events = list(client.fit(self.model_id_, dataset.dataset_id, **fields))
            finally:
                client.delete_dataset(dataset.dataset_id)
        except BaseException:
            self.close()
            raise
        finished = events[-1].finished
        if finished.reason == pb.FIT_END_FAILED:
            raise errors.from_batch_error(finished.error)
        epoch_ends = [e.epoch_end for e in events if e.WhichOneof("event") == "epoch_end"]
        self.n_iter_ = max(1, finished.epochs)
        self.loss_curve_ = [e.mean_loss for e in epoch_ends]
        if self.early_stopping:
            self.validation_scores_ = [e.validation_accuracy for e in epoch_ends]
        return self

    def partial_fit(self, X, y, classes=None):
        """One pass over X, y in batches of batch_size rows, each a TrainStep (in order,
        no shuffling). The first call (on an unfitted estimator) needs `classes`, all
        the labels that any call will see, as sklearn's incremental learners do."""
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = self._check_X(X, reset=first, y=y)
        if first:
            classes = np.unique(np.asarray(classes))
            if len(classes) < 2:
                raise ValueError("partial_fit needs at least 2 classes in `classes`")
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call "
                             f"({self.classes_!r})")
        known = self.classes_ if not first else classes
        if not np.all(np.isin(y, known)):
            raise ValueError(f"y holds labels not in classes: {np.setdiff1d(y, known)!r}")
        if first:
            self.classes_, self.model_id_ = classes, self._create(X.shape[1], len(classes))
            self.n_iter_ = 0
        model_id, labels = self._model(), np.searchsorted(self.classes_, y)
        step = max(1, int(self.batch_size))
        for start in range(0, len(X), step):
            self.client.train_step(model_id, X[start:start + step], labels[start:start + step])
        self.n_iter_ += 1
        return self

    # -- prediction ---------------------------------------------------------------------

    def _scores(self, X) -> np.ndarray:
        model_id = self._model()
        X = self._check_X(X, reset=False)
        rows = max(1, _PREDICT_BYTES // max(1, X.shape[1] * X.itemsize))
        parts = [self.client.scores(model_id, X[i:i + rows]) for i in range(0, len(X), rows)]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, len(self.classes_)))

    def decision_function(self, X) -> np.ndarray:
        """The network's scores, N×C; for two classes the margin s₁ − s₀ (N,), as
        sklearn's binary classifiers give it (positive: classes_[1])."""
        scores = self._scores(X)
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X) -> np.ndarray:
        scores = self._scores(X)  # first: it raises NotFittedError before classes_ exists
        return self.classes_[np.argmax(scores, axis=1)]

    @available_if(_has_probabilities)
    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the scores (loss='softmax' only). For two classes computed from
        the margin, so it ranks rows exactly as decision_function does."""
        scores = self._scores(X)
        if len(self.classes_) == 2:
            p1 = expit(scores[:, 1] - scores[:, 0])
            return np.column_stack([1.0 - p1, p1])
        return softmax(scores, axis=1)

    @available_if(_has_probabilities)
    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))

    # -- files --------------------------------------------------------------------------

    def save(self, path) -> None:
        """Writes the fitted estimator to `path`: a zip of the model's checkpoint
        (ExportModel's safetensors file) and meta.json (parameters, classes_, feature
        names). No pickle, so loading runs no code from the file."""
        check_is_fitted(self, "classes_")
        params = {k: v for k, v in self.get_params().items()
                  if k not in ("address", "token", "tls_ca", "tls_cert", "tls_key", "timeout")}
        params["hidden_layer_sizes"] = list(np.atleast_1d(params["hidden_layer_sizes"]).tolist())
        meta = {
            "format": "backprop_client.sklearn.v1",
            "params": params,
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str if self.classes_.dtype != object else "object",
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": (self.feature_names_in_.tolist()
                                 if hasattr(self, "feature_names_in_") else None),
            "n_iter": int(getattr(self, "n_iter_", 0)),
        }
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("meta.json", json.dumps(meta))
            z.writestr("model.safetensors", self.client.export_model(self._model()))

    @classmethod
    def load(cls, path, **connection) -> "BackpropClassifier":
        """An estimator from `save`'s file, imported into a new model on the server of
        `connection` (address=, token=, tls_ca=, ...: the parameters of the same names)."""
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json"))
            checkpoint = z.read("model.safetensors")
        params = dict(meta["params"], **connection)
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        est = cls(**params)
        est.classes_ = np.array(meta["classes"], dtype=meta["classes_dtype"])
        est.n_features_in_ = meta["n_features_in"]
        if meta["feature_names_in"] is not None:
            est.feature_names_in_ = np.array(meta["feature_names_in"], dtype=object)
        est.n_iter_ = meta["n_iter"]
        est.model_id_ = est.client.import_model(checkpoint).model_id
        return est
