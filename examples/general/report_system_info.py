"""Print what an experiment sees of the machine it runs on."""

import os
import platform
import shutil
import subprocess
import sys

print("python:", sys.version.split()[0], sys.executable)
print("platform:", platform.platform())
print("cpus:", os.cpu_count())
try:
    with open("/proc/meminfo") as meminfo:
        print("memory:", meminfo.readline().split(":", 1)[1].strip())
except OSError:
    print("memory: unknown")
print("experiment:", os.environ.get("STUDIOML_EXPERIMENT", "(not run by Studio)"))
print("CUDA_VISIBLE_DEVICES:", os.environ.get("CUDA_VISIBLE_DEVICES", "(not set)"))
if shutil.which("nvidia-smi"):
    subprocess.run(["nvidia-smi", "-L"], check=False)
else:
    print("gpus: nvidia-smi not found")
