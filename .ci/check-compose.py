"""Structural check of compose.yaml (no Docker engine runs here, so nothing is started).

The stack: Postgres, Redis, the origin in proxy mode, and an app behind it.

Checks what a broken file would get wrong: the three services, images or a build whose
Dockerfile exists and builds the crate CI tests, healthchecks on the dependencies, the origin
waiting for them to be healthy, and every variable the origin needs wired in.
"""
import pathlib
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
doc = yaml.safe_load((root / "compose.yaml").read_text())
errors = []


def need(cond, message):
    if not cond:
        errors.append(message)


services = doc.get("services") or {}
need(set(services) >= {"postgres", "redis", "origin", "app"}, "services postgres, redis, origin, app")
need("image" in services.get("app", {}), "app: image")
for name in ("postgres", "redis"):
    svc = services.get(name, {})
    need("image" in svc, f"{name}: image")
    need("test" in (svc.get("healthcheck") or {}), f"{name}: healthcheck.test")

origin = services.get("origin", {})
build = origin.get("build") or {}
dockerfile = root / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
need(dockerfile.is_file(), f"origin: Dockerfile {dockerfile} exists")
if dockerfile.is_file():
    text = dockerfile.read_text()
    need("cargo build --release -p origin-api" in text, "Dockerfile builds origin-api like CI")
    need(text.count("FROM ") >= 2, "Dockerfile is multi-stage")
depends = origin.get("depends_on") or {}
for name in ("postgres", "redis"):
    need((depends.get(name) or {}).get("condition") == "service_healthy",
         f"origin waits for healthy {name}")
env = origin.get("environment") or {}
for var in ("DATABASE_URL", "REDIS_URL", "SESSION_KEYS", "BIND_ADDR"):
    need(var in env, f"origin: environment {var}")
need(str(env.get("DATABASE_URL", "")).startswith("postgres://"), "DATABASE_URL is Postgres")
need("@postgres:" in str(env.get("DATABASE_URL", "")), "DATABASE_URL names the postgres service")
need("redis:6379" in str(env.get("REDIS_URL", "")), "REDIS_URL names the redis service")
need("healthcheck" in origin, "origin: healthcheck")
# Proxy mode in front of the app service, with the gateway's settings.
for var in ("UPSTREAM_URL", "ACCESS_RULES", "ASSERTION_KEYS", "MOUNT_PATH"):
    need(var in env, f"origin: environment {var}")
need("//app:" in str(env.get("UPSTREAM_URL", "")), "UPSTREAM_URL names the app service")
need(str(env.get("MOUNT_PATH", "/")) in str((origin.get("healthcheck") or {}).get("test", "")),
     "the healthcheck asks the mounted /readyz")

if errors:
    print("compose.yaml: " + "; ".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"compose.yaml: ok ({len(services)} services, origin build {dockerfile.relative_to(root)})")
