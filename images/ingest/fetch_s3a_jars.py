"""Build-time helper of the ingest image: put hadoop-aws (s3a) and its AWS SDK bundle next to pyspark.

The Hadoop version is read from the hadoop-client-api jar that pyspark itself ships, so the s3a jar always
matches the Hadoop inside pyspark; Spark's own Ivy resolver then fetches hadoop-aws of that version with its
transitive runtime dependencies (the AWS SDK v2 bundle) from Maven Central, over TLS, with the checksums
Ivy verifies. Runs only in the image's build stage, never at step run time.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import sys
import tempfile


def main() -> int:
    import pyspark
    from pyspark.sql import SparkSession

    jars = pathlib.Path(pyspark.__file__).parent / "jars"
    api = sorted(jars.glob("hadoop-client-api-*.jar"))
    if not api:
        print(f"no hadoop-client-api jar in {jars}", file=sys.stderr)
        return 1
    version = re.search(r"hadoop-client-api-(.+)\.jar$", api[0].name).group(1)
    ivy = pathlib.Path(tempfile.mkdtemp(prefix="ivy-"))
    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.jars.packages", f"org.apache.hadoop:hadoop-aws:{version}")
        .config("spark.jars.ivy", str(ivy))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.stop()
    fetched = sorted((ivy / "jars").glob("*.jar"))
    names = [p.name for p in fetched]
    if not any(n.startswith("org.apache.hadoop_hadoop-aws-") for n in names):
        print(f"hadoop-aws {version} was not resolved: {names}", file=sys.stderr)
        return 1
    for jar in fetched:
        shutil.copy2(jar, jars / jar.name)
    shutil.rmtree(ivy, ignore_errors=True)
    print(f"hadoop-aws {version} for s3a: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
