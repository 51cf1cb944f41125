"""The smallest experiment: prints a greeting and its arguments."""

import sys

print("hello from Studio", *sys.argv[1:])
