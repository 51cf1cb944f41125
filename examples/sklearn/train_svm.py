"""Train a support-vector classifier on scikit-learn's bundled digits data
set (no download) and print its test accuracy as `accuracy: X`.

The defaults below are deliberately poor; search better ones with
    studio run --metric accuracy:max -hp C=0.1,1,10 -hp gamma=0.0001:3l:0.01 train_svm.py
Studio substitutes C and gamma only where no '=' follows them on the line,
so the assignments below keep their defaults and the SVC(...) arguments,
one per line, get the searched values.
"""

from sklearn import datasets, svm
from sklearn.model_selection import train_test_split

C = 1.0
gamma = 0.01

digits = datasets.load_digits()
x_train, x_test, y_train, y_test = train_test_split(
    digits.data, digits.target, test_size=0.3, random_state=0
)
model = svm.SVC(
    C=C,
    gamma=gamma,
)
model.fit(x_train, y_train)
accuracy = model.score(x_test, y_test)
print("C:", C)
print("gamma:", gamma)
print("accuracy:", accuracy)
