"""Django set-up shared by the Django test modules: settings, the `cache` app of Django's own
test suite (tests/cache from the sdist, found through TAGCACHE_DJANGO_TESTS), a test database."""

import os
import sys
from pathlib import Path

DJANGO_VERSION = "5.2.9"  # pinned: scripts/test.sh downloads this sdist
ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TESTS = ROOT / "target" / "django-src" / f"django-{DJANGO_VERSION}" / "tests"

_done = False


def tests_dir() -> Path:
    return Path(os.environ.get("TAGCACHE_DJANGO_TESTS", str(DEFAULT_TESTS)))


def ensure():
    global _done
    if _done:
        return
    import django
    from django.conf import settings

    d = tests_dir()
    if not (d / "cache" / "tests.py").exists():
        raise RuntimeError(
            f"Django's test suite not found at {d}: scripts/test.sh downloads it "
            f"(pip download --no-binary :all: --no-deps django=={DJANGO_VERSION}); "
            "or set TAGCACHE_DJANGO_TESTS to the sdist's tests/ folder")
    if django.__version__ != DJANGO_VERSION:
        raise RuntimeError(f"Django {django.__version__} installed, the suite is {DJANGO_VERSION}")
    sys.path.insert(0, str(d))
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tagcache-tests",
        USE_TZ=True,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cache"],
        MIDDLEWARE=[],
        ROOT_URLCONF=None,
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        # Replaced per test (override_settings) by a server of the test's own.
        CACHES={"default": {"BACKEND": "tagcache.django.TagCacheBackend",
                            "LOCATION": "redis://127.0.0.1:1/0"}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    _done = True
