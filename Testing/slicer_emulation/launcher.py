"""Stand-in for Slicer's `PythonSlicer` launcher (CTKAppLauncher configured by
SuperBuild/python_configure_python_launcher.cmake and External_python.cmake).

Like the real one it is a separate process that sets the launcher environment of its Slicer
version and starts the real Python (python-real) as its own child with the same arguments, waits
for it, and exits with its exit code. So a caller that kills only the launcher leaves the child
running, exactly as with Slicer: the module must kill the process group.

    <slicer home>/bin/PythonSlicer  ->  this file, run by the test environment's Python

Environment (install tree, from External_python.cmake): PYTHONNOUSERSITE=1 at every version;
PYTHONUTF8=1 from 5.10 on (absent at v5.8.1). PYTHONHOME is not set: the real Python is this
test environment's own.
"""
import os
import subprocess
import sys


def main() -> int:
    version = os.environ.get("LUNET_EMULATED_SLICER", "v5.8.1")
    environment = dict(os.environ)
    environment["PYTHONNOUSERSITE"] = "1"
    major_minor = tuple(int(part) for part in version.lstrip("v").split(".")[:2])
    if major_minor >= (5, 10):
        environment["PYTHONUTF8"] = "1"
    arguments = sys.argv[1:]
    if os.environ.get("LUNET_EMULATION_INSTALLED") and arguments[:3] in (["-m", "pip", "install"], ["-m", "light_the_torch", "install"]):
        # Installs are recorded, not downloaded (slicer_emulation/hiding.py).
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from slicer_emulation.hiding import record_install

        print("Successfully installed " + " ".join(record_install(arguments[3:])))
        return 0
    real_python = os.environ.get("LUNET_EMULATED_PYTHON_REAL", sys.executable)
    child = subprocess.Popen([real_python, *arguments], env=environment)
    try:
        return child.wait()
    except KeyboardInterrupt:
        return child.wait()


if __name__ == "__main__":
    sys.exit(main())
