"""BackpropClassifier: scikit-learn's estimator checks, and real accuracies in Pipeline,
cross_val_score and GridSearchCV, on a real server.

Checks skipped: only check_array_api_input, which scikit-learn skips itself unless
SCIPY_ARRAY_API=1 is set (and array-api-strict installed); BackpropClassifier makes no
array API claim: it converts every input to a numpy array for the wire. Every other
check that applies to a classifier runs and passes (55 per estimator in
scikit-learn 1.9), for the softmax and the SVM loss.
"""

from __future__ import annotations

import gc
import pickle
import uuid
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from backprop_client.sklearn import BackpropClassifier

# Tiny networks and few epochs keep the checks quick on a shared 2-core machine; they
# still clear check_classifiers_train's accuracy bar (0.83 on its blobs).
TINY = dict(hidden_layer_sizes=(16,), epochs=10, learning_rate=1e-2)


@parametrize_with_checks([BackpropClassifier(**TINY), BackpropClassifier(**TINY, loss="svm")])
def test_sklearn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def model_ids(client) -> set:
    return {m.model_id for m in client.list_models()}


def test_digits_held_out_in_a_pipeline(digits, client):
    X_train, X_test, y_train, y_test = digits
    before = model_ids(client)
    pipe = make_pipeline(StandardScaler(), BackpropClassifier()).fit(X_train, y_train)
    clf = pipe[-1]
    assert pipe.score(X_test, y_test) >= 0.95
    assert clf.n_iter_ == 30 and len(clf.loss_curve_) == 30
    assert clf.loss_curve_[-1] < clf.loss_curve_[0] / 5
    assert model_ids(client) - before == {clf.model_id_}
    assert client.list_datasets() == []  # the upload was deleted after the fit
    proba = pipe.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pipe.predict(X_test))
    clf.close()
    assert clf.model_id_ not in model_ids(client) and clf.model_id_ is None
    with pytest.raises(NotFittedError):
        pipe.predict(X_test)


def test_cross_val_score_leaves_no_model(client):
    X, y = load_iris(return_X_y=True)
    gc.collect()
    before = model_ids(client)
    clf = make_pipeline(StandardScaler(), BackpropClassifier(hidden_layer_sizes=(32,), epochs=40,
                                                             learning_rate=1e-2))
    scores = cross_val_score(clf, X, y, cv=5)
    assert scores.mean() >= 0.9 and len(scores) == 5
    gc.collect()
    assert model_ids(client) == before  # each fold's model was deleted with its clone


def test_grid_search_on_digits(digits, client):
    X_train, X_test, y_train, y_test = digits
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), BackpropClassifier(epochs=15)),
        {"backpropclassifier__hidden_layer_sizes": [(32,), (128,)],
         "backpropclassifier__loss": ["softmax", "svm"]},
        cv=3,
    ).fit(X_train, y_train)
    assert grid.best_score_ >= 0.93
    assert grid.score(X_test, y_test) >= 0.95
    assert len(grid.cv_results_["params"]) == 4
    gc.collect()
    # Only the refitted best estimator's model is left.
    assert grid.best_estimator_[-1].model_id_ in model_ids(client)
    del grid
    gc.collect()


def test_string_labels_and_dataframes(client):
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y.to_numpy()]
    clf = BackpropClassifier(hidden_layer_sizes=(32,), epochs=60, learning_rate=1e-2)
    clf.fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert list(clf.feature_names_in_) == list(X.columns) and clf.n_features_in_ == 4
    assert clf.score(X, names) >= 0.9
    assert set(clf.predict(X)) <= set(clf.classes_)
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X.to_numpy())
    assert isinstance(X, pd.DataFrame)


def test_svm_has_no_predict_proba():
    X, y = load_iris(return_X_y=True)
    clf = BackpropClassifier(loss="svm", epochs=5).fit(X, y)
    assert not hasattr(clf, "predict_proba") and not hasattr(clf, "predict_log_proba")
    with pytest.raises(AttributeError) as info:
        clf.predict_proba(X)
    assert "margins, not probabilities" in str(info.value.__cause__)  # why, for people
    assert clf.decision_function(X).shape == (150, 3)


def test_binary_decision_function_is_the_margin():
    X, y = load_iris(return_X_y=True)
    X, y = X[y < 2], np.where(y[y < 2] == 0, "no", "yes")
    clf = BackpropClassifier(epochs=20, learning_rate=1e-2).fit(X, y)
    margin = clf.decision_function(X)
    assert margin.shape == (100,)
    np.testing.assert_array_equal(clf.predict(X), np.where(margin > 0, "yes", "no"))
    assert clf.score(X, y) == 1.0


def test_partial_fit_trains_with_train_steps(digits, client):
    X_train, X_test, y_train, y_test = digits
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    clf = BackpropClassifier(learning_rate=1e-2)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X_train, y_train)
    clf.partial_fit(X_train[:500], y_train[:500], classes=np.arange(10))
    first = clf.score(X_test, y_test)
    for _ in range(5):
        clf.partial_fit(X_train, y_train)
    assert clf.n_iter_ == 6
    assert client.get_model(clf.model_id_, values=False).step == 8 + 5 * 22  # 64-row batches
    assert clf.score(X_test, y_test) >= max(first, 0.93)
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X_train[:3], [0, 1, 11])


def test_save_load_and_pickle_carry_the_model(digits, tmp_path, client):
    X_train, X_test, y_train, _ = digits
    clf = BackpropClassifier(epochs=5).fit(X_train, y_train)
    clf.save(tmp_path / "clf.zip")
    loaded = BackpropClassifier.load(tmp_path / "clf.zip")
    assert loaded.model_id_ != clf.model_id_ and loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.decision_function(X_test), clf.decision_function(X_test))
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X_test), clf.predict_proba(X_test))
    assert copy.model_id_ not in (None, clf.model_id_)
    ids = {clf.model_id_, loaded.model_id_, copy.model_id_}
    del clf, loaded, copy
    gc.collect()
    assert not ids & model_ids(client)  # __del__ deleted all three


def test_fit_is_reproducible_and_early_stopping(digits):
    X_train, X_test, y_train, _ = digits
    a = BackpropClassifier(epochs=3).fit(X_train, y_train)
    b = BackpropClassifier(epochs=3).fit(X_train, y_train)
    assert a.decision_function(X_test).tobytes() == b.decision_function(X_test).tobytes()
    stop = BackpropClassifier(epochs=200, early_stopping=True, n_iter_no_change=2,
                              learning_rate=1e-2).fit(X_train, y_train)
    assert stop.n_iter_ < 200 and len(stop.validation_scores_) == stop.n_iter_
    assert max(stop.validation_scores_) >= 0.9


def test_name_and_labels_become_the_server_models_metadata(client):
    X, y = load_iris(return_X_y=True)
    tag = uuid.uuid4().hex  # the suite's server is shared: find only this test's models
    labels = {"suite": tag, "estimator": "BackpropClassifier"}
    clf = BackpropClassifier(hidden_layer_sizes=(8,), epochs=3, name="iris", labels=labels)
    assert clf.get_params()["name"] == "iris" and clf.get_params()["labels"] is labels
    clf.fit(X, y)
    twin = clone(clf).partial_fit(X, y, classes=[0, 1, 2])  # a clone's model: the same labels
    listed = {m.model_id: m for m in client.list_models(labels={"suite": tag})}
    assert set(listed) == {clf.model_id_, twin.model_id_}
    meta = listed[clf.model_id_].metadata
    assert meta.name == "iris" and meta.labels == labels
    assert meta.dataset_id != ""  # fit's upload, deleted since but still named
    assert listed[clf.model_id_].last_epoch.mean_loss == clf.loss_curve_[-1]
    assert listed[twin.model_id_].metadata.name == "iris"
    assert listed[twin.model_id_].last_epoch is None  # TrainSteps only
    clf.close()
    twin.close()
    assert client.list_models(labels={"suite": tag}) == []
