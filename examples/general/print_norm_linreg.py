"""Print the squared L2 norm of the last weights saved by train_linreg.py.

Run it with the weights of an earlier experiment reused under the tag `w`:
    studio run --reuse=linear_regression/weights:w print_norm_linreg.py
"""

import glob
import os
import pickle

from studio import fs_tracker

weights_list = glob.glob(os.path.join(fs_tracker.get_artifact("w"), "*.pck"))
weights_list.sort()

print("*****")
print(weights_list[-1])
with open(weights_list[-1], "rb") as f:
    w = pickle.load(f)

print(w.dot(w))
print("*****")
