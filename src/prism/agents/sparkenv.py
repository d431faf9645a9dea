"""Where a Spark session on an EMR master runs, without touching the user's profile.

The pyspark adapter builds its session with `SparkSession.builder`, which reads
`spark-defaults.conf` from `SPARK_CONF_DIR`. The EMR agent writes its own
configuration folder next to the agent's virtual environment and points
`SPARK_CONF_DIR` at it for each run, so a profile's `config` still wins over
anything set here.

On a cluster node (a master with `/etc/spark/conf` and `/etc/hadoop/conf`) the
folder starts from EMR's own `spark-defaults.conf`, `log4j2.properties` and
`hive-site.xml`, and sets `spark.master yarn`. The virtual environment is packed
into `environment.tar` (the equivalent of `venv-pack`: the venv's `bin/python`
links to the node's interpreter, which every node gets from the bootstrap
script) and shipped to the executors with `spark.archives`, so driver and
executors run the same Python and packages. Elsewhere, such as a test machine
without YARN, the session runs in local mode with the agent's interpreter.

This module is imported on the master too, so it imports nothing heavy.
"""

from __future__ import annotations

import shlex

__all__ = ["run_environment", "setup_script", "ui_addresses"]

EMR_SPARK_CONF = "/etc/spark/conf"
EMR_HADOOP_CONF = "/etc/hadoop/conf"
ARCHIVE_NAME = "environment"


def setup_script(
    folder: str,
    fingerprint: str,
    *,
    spark_conf: str = EMR_SPARK_CONF,
    hadoop_conf: str = EMR_HADOOP_CONF,
) -> str:
    """Return the shell script that writes `<folder>/spark/` and prints the mode.

    `folder` is the agent's folder in shell syntax (it may use `$HOME`). The
    script builds `spark.new/` and swaps it in at the end, so an interrupted
    setup leaves the previous configuration working.
    """
    spark = shlex.quote(spark_conf)
    hadoop = shlex.quote(hadoop_conf)
    return f"""set -eu
folder={folder}
cd "$folder"
rm -rf spark.new
mkdir -p spark.new/conf
if [ -f {spark}/spark-defaults.conf ] && [ -d {hadoop} ]; then
  mode=yarn
  for name in spark-defaults.conf log4j2.properties hive-site.xml; do
    if [ -f {spark}/$name ]; then cp {spark}/$name spark.new/conf/; fi
  done
  tar -C venv -cf spark.new/{ARCHIVE_NAME}.tar .
  cat >> spark.new/conf/spark-defaults.conf <<EOF

# Added by Prism: run on YARN; executors unpack the agent's environment.
spark.master yarn
spark.submit.deployMode client
spark.archives $folder/spark/{ARCHIVE_NAME}.tar#{ARCHIVE_NAME}
spark.pyspark.python ./{ARCHIVE_NAME}/bin/python
spark.executorEnv.PYSPARK_PYTHON ./{ARCHIVE_NAME}/bin/python
EOF
else
  mode=local
  printf '# Written by Prism: no YARN on this host, so Spark runs locally.\\n' \\
    > spark.new/conf/spark-defaults.conf
  printf 'spark.master local[*]\\n' >> spark.new/conf/spark-defaults.conf
fi
echo "$mode" > spark.new/mode
echo {shlex.quote(fingerprint)} > spark.new/fingerprint
rm -rf spark
mv spark.new spark
echo "$mode"
"""


def run_environment(
    mode: str, folder: str, *, hadoop_conf: str = EMR_HADOOP_CONF
) -> dict[str, str]:
    """Return the variables a run on the master gets; `folder` is an absolute path.

    `PYSPARK_PYTHON` names the executors' interpreter: the unpacked archive's
    on YARN, the agent's own in local mode.
    """
    environment = {"SPARK_CONF_DIR": f"{folder}/spark/conf"}
    if mode == "yarn":
        environment["HADOOP_CONF_DIR"] = hadoop_conf
        environment["YARN_CONF_DIR"] = hadoop_conf
        environment["PYSPARK_PYTHON"] = f"./{ARCHIVE_NAME}/bin/python"
    else:
        environment["PYSPARK_PYTHON"] = f"{folder}/venv/bin/python"
    return environment


def ui_addresses(mode: str, host: str) -> str:
    """Describe where the Spark UI of a run on `host` is, for the run's first line."""
    if mode == "yarn":
        return (
            f"Spark UI while a session runs: http://{host}:4040 (applications: "
            f"http://{host}:8088, history: http://{host}:18080)"
        )
    return f"Spark UI while a session runs: http://{host}:4040 (local mode)"
