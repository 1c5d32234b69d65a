"""scikit-learn's MLPClassifier against fastbp.sklearn's: one whole fit of
each training in fastbp/cli/bench_sklearn.py (the `sklearn` table of
`python -m fastbp bench`), float64 as scikit-learn trains."""
import warnings

from fastbp.cli.bench_sklearn import SKLEARN_CASES, estimator, sklearn_data


class SklearnFit:
    params = (["fastbp", "sklearn"], list(SKLEARN_CASES))
    param_names = ["impl", "training"]
    timeout = 300

    def setup(self, impl, training):
        self.x, self.y, _, _ = sklearn_data(SKLEARN_CASES[training][0])
        self.make = lambda: estimator(impl, training)
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: the epochs are fixed
        if impl == "fastbp":
            self.make().fit(self.x[:64], self.y[:64])  # compiled outside the timing

    def time_fit(self, impl, training):
        self.make().fit(self.x, self.y)
