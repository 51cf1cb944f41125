"""Linear regression by gradient descent that saves its weights each step.

The example of StudioML's documentation, updated for Python 3: weights are
pickled in binary mode into the artifact tagged `weights` when Studio runs
the script (`--capture=~/.weights:weights`), else into ~/.weights.
"""

import os
import pickle

import numpy as np

try:
    from studio import fs_tracker

    weights_dir = fs_tracker.get_artifact("weights")
except ImportError:
    weights_dir = os.path.expanduser("~/.weights")
os.makedirs(weights_dir, exist_ok=True)

no_samples = 100
dim_samples = 5

learning_rate = 0.01
no_steps = 10

X = np.random.random((no_samples, dim_samples))
y = np.random.random((no_samples,))

w = np.random.random((dim_samples,))

for step in range(no_steps):
    yhat = X.dot(w)
    err = yhat - y
    dw = err.dot(X)
    w -= learning_rate * dw
    loss = 0.5 * err.dot(err)

    print("step = {}, loss = {}, L2 norm = {}".format(step, loss, w.dot(w)))

    path = os.path.join(weights_dir, "lr_w_{:02d}_{}.pck".format(step, loss))
    with open(path, "wb") as f:
        f.write(pickle.dumps(w))
