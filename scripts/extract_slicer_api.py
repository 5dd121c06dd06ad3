"""Extract the Python-visible API of a Slicer release from its sources, for
Testing/test_versions_slicer_api.py (issue 13: the shipped code must call only what Slicer 5.8.1 has).

Usage (the committed list was made with exactly this):
    # fetch Slicer's git history first, e.g. git clone https://github.com/Slicer/Slicer
    python scripts/extract_slicer_api.py --slicer-git /path/to/Slicer --tag v5.8.1 \
        --out Testing/data/slicer_5.8.1_api.txt

Reads, at the tag (via `git show`, no checkout needed):
  - C++ headers of the MRML, segmentation, volumes, markups, subject hierarchy, terminology,
    colour, sequence and transform libraries/logics and the application logic: one line
    `Class.Method` per declared method, including the accessors that VTK macros generate
    (vtkSetMacro(X) -> SetX, vtkGetMacro(X) -> GetX, vtkBooleanMacro(X) -> XOn/XOff, ...);
  - Base/Python/slicer/util.py: one line `slicer.util.function` per top-level function;
  - Base/Python/slicer/parameterNodeWrapper/wrapper.py: the methods it adds to wrapped classes,
    as `parameterNodeWrapper.method`.
The headers are parsed with regular expressions, not a C++ parser: the list errs towards
including names (a declaration in a comment counts), never towards missing a declared method.
"""
from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

HEADER_DIRS = re.compile(
    r"^(Libs/MRML/Core|Libs/MRML/Logic|Libs/vtkSegmentationCore|Libs/vtkITK|Base/Logic|"
    r"Modules/Loadable/(Segmentations|Terminologies|Volumes|SubjectHierarchy|Markups|Colors|Sequences|Transforms)/"
    r"(Logic|MRML|vtkSegmentationCore))/.*\.h$"
)
MACROS = {
    # macro -> accessor prefixes/suffixes it generates
    "vtkSetMacro": ["Set{}"], "vtkGetMacro": ["Get{}"], "vtkSetStringMacro": ["Set{}"], "vtkGetStringMacro": ["Get{}"],
    "vtkSetClampMacro": ["Set{}", "Get{}MinValue", "Get{}MaxValue"], "vtkBooleanMacro": ["{}On", "{}Off"],
    "vtkSetObjectMacro": ["Set{}"], "vtkGetObjectMacro": ["Get{}"], "vtkSetSmartPointerMacro": ["Set{}"],
    "vtkGetSmartPointerMacro": ["Get{}"], "vtkGetNewMacro": ["Get{}"], "vtkGetEnumMacro": ["Get{}"],
    "vtkSetEnumMacro": ["Set{}"],
    **{f"vtk{kind}Vector{n}Macro": [f"{kind}{{}}"] for kind in ("Set", "Get") for n in ("", "2", "3", "4", "6")},
}
# Two passes: parameter lists without braces, then with `={}` defaults (a single pattern that
# allows braces lets one match swallow the next declaration, so some names would be lost).
METHODS = [
    re.compile(r"(?:^|[\s*&:~])([A-Za-z_]\w*)\s*\(" + params + r"\)\s*(?:const)?\s*(?:override|final)?\s*(?:=\s*0)?\s*[;{]", re.M)
    for params in (r"[^;{}]*", r"(?:[^;{}]|\{\})*")
]
MACRO = re.compile(r"\b(vtk\w*Macro)\s*\(\s*(\w+)")
CLASS = re.compile(r"^\s*class\s+(?:\w+_EXPORT\s+)?(\w+)\s*(?::|$|\{)", re.M)
VTK_OBJECT = ["IsA", "GetClassName", "SafeDownCast", "NewInstance", "Modified", "AddObserver", "RemoveObserver",
              "HasObserver", "InvokeEvent", "GetMTime", "Register", "UnRegister", "IsTypeOf"]
NOT_METHODS = {"if", "for", "while", "switch", "return", "sizeof", "defined", "catch", "static_cast", "dynamic_cast"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def header_api(text: str) -> dict[str, set[str]]:
    """Class -> method names declared in one header (each class runs to the next class)."""
    api: dict[str, set[str]] = {}
    positions = [(m.start(), m.group(1)) for m in CLASS.finditer(text)]
    for index, (start, name) in enumerate(positions):
        end = positions[index + 1][0] if index + 1 < len(positions) else len(text)
        body = re.sub(r"//[^\n]*", "", text[start:end])
        methods = {m.group(1) for pattern in METHODS for m in pattern.finditer(body)} - NOT_METHODS
        for macro, argument in MACRO.findall(body):
            for pattern in MACROS.get(macro, []):
                methods.add(pattern.format(argument))
        if "vtkTypeMacro" in body:
            methods.update(VTK_OBJECT)
        api.setdefault(name, set()).update(methods)
    return api


def python_functions(text: str, indent: str = "") -> set[str]:
    return set(re.findall(rf"^{indent}def ([A-Za-z]\w*)\s*\(", text, re.M))


def extract(repo: Path, tag: str) -> list[str]:
    lines = set()
    for path in git(repo, "ls-tree", "-r", "--name-only", tag).splitlines():
        if HEADER_DIRS.match(path):
            for cls, methods in header_api(git(repo, "show", f"{tag}:{path}")).items():
                lines.update(f"{cls}.{method}" for method in methods)
    util = git(repo, "show", f"{tag}:Base/Python/slicer/util.py")
    lines.update(f"slicer.util.{name}" for name in python_functions(util))
    wrapper = git(repo, "show", f"{tag}:Base/Python/slicer/parameterNodeWrapper/wrapper.py")
    lines.update(f"parameterNodeWrapper.{name}" for name in re.findall(r'checkedSetAttr\(classtype, "(\w+)"', wrapper))
    return sorted(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slicer-git", required=True, type=Path, help="a Slicer git repository (bare is fine)")
    parser.add_argument("--tag", default="v5.8.1")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    lines = extract(args.slicer_git, args.tag)
    header = [
        f"# Python-visible API of Slicer {args.tag}, extracted from its sources by",
        f"#   python scripts/extract_slicer_api.py --slicer-git <Slicer repo> --tag {args.tag} --out {args.out}",
        f"# commit {git(args.slicer_git, 'rev-list', '-n', '1', args.tag).strip()}; {len(lines)} entries.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + lines) + "\n")
    print(f"{len(lines)} entries written to {args.out}")


if __name__ == "__main__":
    main()
