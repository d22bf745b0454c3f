"""berth/python build.

Layers (<layers>/berth_python/...):
  venv/       launch+build+cache  a virtualenv on Debian's python3 (bin/python3 -> /usr/bin/python3),
                                  keyed by the requirements' digest and the Python version
  pip-cache/  cache               pip's download cache

Only Debian's python3 exists on this stack: a runtime.txt or .python-version asking
for another version is reported and Debian's is used instead.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

LAYERS = os.environ.get("CNB_LAYERS_DIR") or sys.argv[1]
APP = os.getcwd()
PY = "/usr/bin/python3"
HAVE = ".".join(map(str, sys.version_info[:3]))


def header(s):
    print(f"-----> {s}", flush=True)


def info(s):
    print(f"       {s}", flush=True)


def warn(s):
    print(f" !     {s}", flush=True)


def run(args, env=None):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    for line in p.stdout:
        if line.strip():
            info(line.rstrip())
    if p.wait() != 0:
        warn(f"{' '.join(args)} exited with code {p.returncode}")
        sys.exit(1)


def requested_version():
    for name in ("runtime.txt", ".python-version"):
        path = os.path.join(APP, name)
        if os.path.isfile(path):
            text = open(path).read().strip().splitlines()
            text = text[0].strip() if text else ""
            m = re.match(r"^(?:python-)?(\d+(?:\.\d+){0,2})", text)
            return name, text, (m.group(1) if m else None)
    return None, None, None


def read_metadata(name):
    path = os.path.join(LAYERS, f"{name}.toml")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f).get("metadata", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None


def layer_toml(name, launch=False, build=False, cache=False, metadata=None):
    lines = ["[types]", f"launch = {str(launch).lower()}", f"build = {str(build).lower()}", f"cache = {str(cache).lower()}", "", "[metadata]"]
    for k, v in (metadata or {}).items():
        lines.append(f"{k} = {json.dumps(v)}")
    with open(os.path.join(LAYERS, f"{name}.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")


def dependencies():
    """(source name, list of requirement lines, bytes hashed for the cache key)."""
    req = os.path.join(APP, "requirements.txt")
    if os.path.isfile(req):
        raw = open(req, "rb").read()
        lines = [l.split("#", 1)[0].strip() for l in raw.decode().splitlines()]
        return "requirements.txt", [l for l in lines if l], raw
    with open(os.path.join(APP, "pyproject.toml"), "rb") as f:
        try:
            doc = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            warn(f"pyproject.toml is not valid TOML: {e}")
            sys.exit(1)
    deps = list(doc.get("project", {}).get("dependencies", []))
    return "pyproject.toml", deps, json.dumps(deps).encode()


def fix_shebangs(venv):
    """Console scripts name the venv's python by its build path; make them find it on PATH."""
    bindir = os.path.join(venv, "bin")
    for name in os.listdir(bindir):
        path = os.path.join(bindir, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            first = f.readline()
            rest = f.read()
        if first.startswith(b"#!") and venv.encode() in first:
            with open(path, "wb") as f:
                f.write(b"#!/usr/bin/env python3\n" + rest)


def main():
    header("Python app detected")
    source, want, wanted = requested_version()
    if wanted is None:
        info(f"Using Python {HAVE} (Debian's python3)")
    elif HAVE == wanted or HAVE.startswith(wanted + "."):
        info(f"{source} asks for Python {want}: using Python {HAVE} (Debian's python3)")
    elif ".".join(HAVE.split(".")[:2]) == ".".join(wanted.split(".")[:2]):
        warn(f"{source} asks for Python {wanted}; this stack has Python {HAVE} (Debian's python3), which is used instead.")
    else:
        warn(f"{source} asks for Python {wanted}, which this stack cannot provide.")
        warn(f"Using Python {HAVE} (Debian's python3) instead.")

    src, deps, raw = dependencies()
    digest = hashlib.sha256(raw).hexdigest()
    venv = os.path.join(LAYERS, "venv")
    cached = read_metadata("venv")
    header("Installing requirements")
    if cached and cached.get("digest") == digest and cached.get("python_version") == HAVE and os.path.exists(os.path.join(venv, "bin", "python3")):
        info(f"Reusing the virtualenv ({src} unchanged, Python {HAVE})")
        # Restored layers come back with metadata only; writing the types again keeps the layer.
        layer_toml("venv", launch=True, build=True, cache=True, metadata=cached)
    else:
        shutil.rmtree(venv, ignore_errors=True)
        if os.path.exists(os.path.join(LAYERS, "venv.toml")):
            os.remove(os.path.join(LAYERS, "venv.toml"))
        host_pip = subprocess.run([PY, "-m", "pip", "--version"], capture_output=True).returncode == 0
        # Without deps, or with the host's pip driving the venv (pip --python), ensurepip (~7 s) is skipped.
        run([PY, "-m", "venv", *(["--without-pip"] if host_pip or not deps else []), venv])
        if deps:
            cache = os.path.join(LAYERS, "pip-cache")
            os.makedirs(cache, exist_ok=True)
            pip = [PY, "-m", "pip", "--python", os.path.join(venv, "bin", "python3")] if host_pip else [os.path.join(venv, "bin", "pip")]
            env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_CACHE_DIR": cache}
            info(f"Installing {len(deps)} requirement(s) from {src} with pip")
            if src == "requirements.txt":
                run([*pip, "install", "-r", os.path.join(APP, "requirements.txt")], env)
            else:
                run([*pip, "install", *deps], env)
            fix_shebangs(venv)
        else:
            info(f"{src} lists no dependencies")
        os.makedirs(os.path.join(venv, "env.launch"), exist_ok=True)
        with open(os.path.join(venv, "env.launch", "PYTHONUNBUFFERED.default"), "w") as f:
            f.write("1")
        with open(os.path.join(venv, "env.launch", "VIRTUAL_ENV.override"), "w") as f:
            f.write(venv)
        layer_toml("venv", launch=True, build=True, cache=True, metadata={"digest": digest, "python_version": HAVE})

    if os.path.isdir(os.path.join(LAYERS, "pip-cache")):
        layer_toml("pip-cache", cache=True)

    command = default_process(venv)
    if command:
        info(f"Default web process: {command}")
        with open(os.path.join(LAYERS, "launch.toml"), "w") as f:
            f.write(f'[[processes]]\ntype = "web"\ncommand = {json.dumps(command)}\ndefault = true\n')
    elif not os.path.isfile(os.path.join(APP, "Procfile")):
        info("No Procfile, app.py, main.py or wsgi.py: add a Procfile to say how to run the app.")


def default_process(venv):
    if os.path.isfile(os.path.join(APP, "Procfile")):
        return None
    if os.path.exists(os.path.join(venv, "bin", "gunicorn")):
        for mod in ("wsgi", "app", "main"):
            if os.path.isfile(os.path.join(APP, f"{mod}.py")):
                return f"gunicorn {mod}:app --bind 0.0.0.0:$PORT"
    for mod in ("app", "main"):
        if os.path.isfile(os.path.join(APP, f"{mod}.py")):
            return f"python3 {mod}.py"
    return None


main()
