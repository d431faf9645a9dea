"""The dbt adapter: `hooks.dbt_ref` end to end through `prism run`, on dbt-duckdb.

One dbt project (built once per module with `dbt run`, for two targets) serves
every test. Its DuckDB files are read in the `prism run` process, in which dbt
runs in process too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    MakeProject,
    RunPrism,
    assert_usage_error,
    events,
    flat,
    of_type,
    prism_env,
)
from tests.connectors.postgres_server import PostgresServer
from tests.integration import require

QUIET_FLAGS = [
    "--log-level",
    "none",
    "--log-level-file",
    "none",
    "--no-send-anonymous-usage-stats",
]

DBT_FILES = {
    "dbt_project.yml": """\
        name: shop
        version: "1.0"
        profile: shop
        models:
          shop:
            +materialized: table
        """,
    "models/orders.sql": """\
        select 1 as id, 'apple' as item, 2.5 as price,
            '{{ target.name }}' as target_name
        union all
        select 2, 'pear', 3.0, '{{ target.name }}'
        """,
    "models/customers_v1.sql": "select 1 as version\n",
    "models/customers_v2.sql": "select 2 as version\n",
    "models/staging.sql": ("{{ config(materialized='ephemeral') }}\nselect 1 as id\n"),
    "models/schema.yml": """\
        models:
          - name: customers
            latest_version: 2
            versions:
              - v: 1
              - v: 2
        """,
}

PROFILES = """\
shop:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: "{folder}/dev.duckdb"
    alt:
      type: duckdb
      path: "{folder}/alt.duckdb"
"""

PRISM_PROFILE = """\
dev:
  adapters:
    shop:
      type: dbt
      project_dir: shop_dbt
      profiles_dir: shop_dbt
    shop_alt:
      type: dbt
      project_dir: "{{ wkdir() }}/shop_dbt"
      profiles_dir: shop_dbt
      profiles_target: alt
"""

READ_MODELS_TASK = """\
import json
import subprocess
import sys
from pathlib import Path

from prism.task import PrismTask

WRITE_PROBE = (
    "import duckdb; "
    "duckdb.connect('shop_dbt/dev.duckdb').execute('create table probe as select 1')"
)


class ReadModels(PrismTask):
    def run(self, tasks, hooks):
        orders = hooks.dbt_ref("shop", "orders")
        models = {
            "orders": orders.to_dict(orient="list"),
            "dtypes": [str(dtype) for dtype in orders.dtypes],
            "package_form": len(hooks.dbt_ref("shop", "shop", "orders")),
            "latest": hooks.dbt_ref("shop", "customers")["version"].tolist(),
            "v1": hooks.dbt_ref("shop", "customers", target_version=1)[
                "version"
            ].tolist(),
            "alt": hooks.dbt_ref("shop_alt", "orders")["target_name"].tolist(),
        }
        writer = subprocess.run(
            [sys.executable, "-c", WRITE_PROBE], capture_output=True, text=True
        )
        models["file_free"] = writer.returncode == 0
        models["writer_error"] = writer.stderr[-500:]
        models["errors"] = [
            refused(hooks, "customers", target_version=3),
            refused(hooks, "staging"),
        ]
        Path("models.json").write_text(json.dumps(models))
        return "read"


def refused(hooks, *arguments, **keywords):
    try:
        hooks.dbt_ref("shop", *arguments, **keywords)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "no error"
"""


def failing_ref_task(*arguments: str) -> str:
    call = ", ".join(repr(argument) for argument in arguments)
    return (
        "from prism.task import PrismTask\n\n\n"
        "class BadRef(PrismTask):\n"
        "    def run(self, tasks, hooks):\n"
        f"        return hooks.dbt_ref({call})\n"
    )


def require_dbt_duckdb() -> None:
    found = all(
        importlib.util.find_spec(name) is not None
        for name in ("dbt.cli", "dbt.adapters.duckdb", "pandas")
    )
    require(
        found, "dbt-core, dbt-duckdb or pandas is missing: pip install -e '.[test]'"
    )


def write_files(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


# Runs in a child process: dbt-duckdb keeps the last DuckDB file locked until its
# process exits.
BUILD_SCRIPT = """\
import sys
from dbt.cli.main import dbtRunner

folder, targets, flags = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
common = ["--project-dir", folder, "--profiles-dir", folder, *flags]
for target in targets:
    result = dbtRunner().invoke(["run", "--target", target, *common])
    if not result.success:
        sys.exit(f"dbt run --target {target} failed: {result.exception}")
"""


def build_dbt_project(
    folder: Path,
    profiles: str,
    targets: tuple[str, ...],
    env: dict[str, str] | None = None,
) -> Path:
    """Write the dbt project and materialize its models for `targets`."""
    write_files(folder, DBT_FILES)
    (folder / "profiles.yml").write_text(profiles)
    subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT, str(folder), ",".join(targets)]
        + QUIET_FLAGS,
        check=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )
    return folder


@dataclass(frozen=True)
class DbtProject:
    """A Prism project beside a built dbt project, as `shop_dbt/`."""

    root: Path

    @property
    def dbt_dir(self) -> Path:
        return self.root / "shop_dbt"

    def write_task(self, name: str, text: str) -> None:
        (self.root / "tasks" / f"{name}.py").write_text(text)


@pytest.fixture(scope="module")
def dbt_project(tmp_path_factory: pytest.TempPathFactory) -> DbtProject:
    require_dbt_duckdb()
    root = tmp_path_factory.mktemp("dbt") / "project"
    write_files(
        root,
        {
            "prism_project.py": 'PROFILE = "dev"\n',
            "profile.yml": PRISM_PROFILE,
            "tasks/read_models.py": READ_MODELS_TASK,
        },
    )
    folder = root / "shop_dbt"
    build_dbt_project(folder, PROFILES.format(folder=folder), ("dev", "alt"))
    return DbtProject(root=root)


@pytest.fixture(scope="module")
def read_models_run(dbt_project: DbtProject) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "prism",
            "run",
            "-t",
            "read_models",
            "--log-format",
            "json",
        ],
        cwd=dbt_project.root,
        env=prism_env(),
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def models_read(project: DbtProject) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((project.root / "models.json").read_text())
    return loaded


def test_dbt_ref_returns_model_rows(
    dbt_project: DbtProject, read_models_run: subprocess.CompletedProcess[str]
) -> None:
    finished = of_type(events(read_models_run.stdout), "run_finished")
    assert finished[-1]["exit_code"] == 0, read_models_run.stdout
    orders = models_read(dbt_project)["orders"]
    assert orders["id"] == [1, 2]
    assert orders["item"] == ["apple", "pear"]
    assert orders["price"] == [2.5, 3.0]


def test_dbt_ref_numbers_become_numeric_columns(
    dbt_project: DbtProject, read_models_run: subprocess.CompletedProcess[str]
) -> None:
    dtypes = models_read(dbt_project)["dtypes"]
    assert dtypes[0] == "int64"
    assert dtypes[2] == "float64"


def test_dbt_ref_accepts_package_first(
    dbt_project: DbtProject, read_models_run: subprocess.CompletedProcess[str]
) -> None:
    assert models_read(dbt_project)["package_form"] == 2


def test_dbt_ref_resolves_model_versions(
    dbt_project: DbtProject, read_models_run: subprocess.CompletedProcess[str]
) -> None:
    models = models_read(dbt_project)
    assert models["latest"] == [2]
    assert models["v1"] == [1]


def test_profiles_target_selects_dbt_target(
    dbt_project: DbtProject, read_models_run: subprocess.CompletedProcess[str]
) -> None:
    assert models_read(dbt_project)["alt"] == ["alt", "alt"]


def test_dbt_ref_leaves_duckdb_file_unlocked(
    dbt_project: DbtProject, read_models_run: subprocess.CompletedProcess[str]
) -> None:
    """Another process writes the DuckDB file while the run still goes on."""
    models = models_read(dbt_project)
    assert models["file_free"], models["writer_error"]


def test_dbt_writes_no_console_output(
    dbt_project: DbtProject, read_models_run: subprocess.CompletedProcess[str]
) -> None:
    lines = [
        event["line"]
        for event in of_type(events(read_models_run.stdout), "task_output")
    ]
    assert lines == []
    assert not list(dbt_project.dbt_dir.glob("logs/*"))


def test_unknown_dbt_model_fails_task(
    dbt_project: DbtProject, run_prism: RunPrism
) -> None:
    dbt_project.write_task("bad_ref", failing_ref_task("shop", "order"))
    try:
        result = run_prism("run", "-t", "bad_ref", cwd=dbt_project.root, timeout=180)
    finally:
        (dbt_project.root / "tasks" / "bad_ref.py").unlink()
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "DbtError: profile.yml: dev.adapters.shop: dbt model order was not found "
        "in the dbt project; did you mean 'orders'?"
    ) in flat(result.stdout)


def test_dbt_ref_explains_unreadable_models(
    dbt_project: DbtProject, read_models_run: subprocess.CompletedProcess[str]
) -> None:
    where = "DbtError: profile.yml: dev.adapters.shop"
    assert models_read(dbt_project)["errors"] == [
        f"{where}: dbt model customers has no version 3",
        f"{where}: dbt model staging is ephemeral, so there is no table or view "
        "to read",
    ]


def dbt_profile(settings: str) -> str:
    return "dev:\n  adapters:\n    shop:\n" + textwrap.indent(
        textwrap.dedent(settings), "      "
    )


@pytest.mark.parametrize(
    ("settings", "fragments"),
    [
        (
            "type: dbt\nproject_dir: shop_dbt\ntarget: dev\n",
            ("profile.yml: dev.adapters.shop.target: unknown key",),
        ),
        (
            "type: dbt\nprofiles_dir: shop_dbt\n",
            ("profile.yml: dev.adapters.shop.project_dir: missing",),
        ),
        (
            "type: dbt\nproject_dir: elsewhere\nprofiles_dir: shop_dbt\n",
            (
                "profile.yml: dev.adapters.shop.project_dir: the folder has no "
                "dbt_project.yml",
            ),
        ),
        (
            "type: dbt\nproject_dir: shop_dbt\nprofiles_dir: shop_dbt/models\n",
            (
                "profile.yml: dev.adapters.shop.profiles_dir: the folder has no "
                "profiles.yml",
            ),
        ),
    ],
)
def test_bad_dbt_settings_exit_2(
    make_project: MakeProject,
    run_prism: RunPrism,
    settings: str,
    fragments: tuple[str, ...],
) -> None:
    require(
        importlib.util.find_spec("dbt.cli") is not None, "dbt-core is not installed"
    )
    project = make_project(
        {
            "profile.yml": dbt_profile(settings),
            "tasks/read.py": failing_ref_task("shop", "orders"),
            "shop_dbt/dbt_project.yml": "name: shop\nprofile: shop\n",
            "shop_dbt/profiles.yml": "shop: {}\n",
            "shop_dbt/models/orders.sql": "select 1\n",
        },
        prism_project='PROFILE = "dev"\n',
    )
    result = run_prism("run", cwd=project)
    assert_usage_error(result, *fragments)
    assert "[RUN]" not in result.stdout


POSTGRES_PROFILES = """\
shop:
  target: dev
  outputs:
    dev:
      type: postgres
      host: 127.0.0.1
      port: {port}
      user: {user}
      password: "{{{{ env_var('SHOP_PG_PASSWORD') }}}}"
      dbname: {database}
      schema: analytics
      threads: 1
"""

READ_ORDERS_TASK = """\
import json
from pathlib import Path

from prism.task import PrismTask


class ReadOrders(PrismTask):
    def run(self, tasks, hooks):
        orders = hooks.dbt_ref("shop", "orders")
        Path("orders.json").write_text(orders.to_json(orient="records"))
        return len(orders)
"""


def test_dbt_ref_reads_postgres_model(
    postgres: PostgresServer,
    pg_database: str,
    make_project: MakeProject,
    run_prism: RunPrism,
) -> None:
    """dbt-postgres against the live PostgreSQL server of the connector tests."""
    require(
        importlib.util.find_spec("dbt.adapters.postgres") is not None,
        "dbt-postgres is missing: pip install -e '.[test]'",
    )
    project = make_project(
        {
            "profile.yml": dbt_profile(
                "type: dbt\nproject_dir: shop_dbt\nprofiles_dir: shop_dbt\n"
            ),
            "tasks/read_orders.py": READ_ORDERS_TASK,
        },
        prism_project='PROFILE = "dev"\n',
    )
    password = {"SHOP_PG_PASSWORD": postgres.password}
    profiles = POSTGRES_PROFILES.format(
        port=postgres.port, user=postgres.user, database=pg_database
    )
    build_dbt_project(project / "shop_dbt", profiles, ("dev",), env=password)

    result = run_prism("run", cwd=project, env=password, timeout=180)

    assert result.returncode == 0, result.stdout + result.stderr
    orders = json.loads((project / "orders.json").read_text())
    assert orders == [
        {"id": 1, "item": "apple", "price": 2.5, "target_name": "dev"},
        {"id": 2, "item": "pear", "price": 3.0, "target_name": "dev"},
    ]
