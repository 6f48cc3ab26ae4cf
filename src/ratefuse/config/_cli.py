"""``ratefuse config push|show|status``: a fleet's configuration in Redis
or etcd, from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ratefuse.config._bounds import MAX_CONFIG_BYTES
from ratefuse.config._etcd_store import DEFAULT_ETCD_KEY, EtcdConfigStore
from ratefuse.config._publish import push_config
from ratefuse.config._redis_source import DEFAULT_REDIS_KEY, RedisConfigStore
from ratefuse.config._schema import ConfigError
from ratefuse.config._source import StoreError, VersionConflictError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`add_parser` adds ``config`` and its subcommands to ``commands``."""
    config = commands.add_parser(
        "config", help="push, show and follow a fleet's config in Redis or etcd"
    )
    actions = config.add_subparsers(dest="config_command", required=True)
    push = actions.add_parser(
        "push",
        help="check a TOML file and write it as the next version "
        "(refused if someone pushed since it was checked)",
    )
    push.add_argument("file", type=Path, help="the TOML configuration")
    push.add_argument(
        "--allow-removals",
        action="store_true",
        help="let it drop entries of the stored version without [removed]",
    )
    show = actions.add_parser("show", help="print the stored version")
    status = actions.add_parser(
        "status", help="list the versions the fleet's processes acknowledged"
    )
    for parser in (push, show, status):
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--redis", metavar="URL", help="redis://host:port/db")
        where.add_argument("--etcd", metavar="URL", help="http://host:port")
        parser.add_argument(
            "--key",
            help=f"where the config lives (default {DEFAULT_REDIS_KEY} in "
            f"Redis, {DEFAULT_ETCD_KEY} in etcd)",
        )
    for parser in (show, status):
        parser.add_argument(
            "--prefix",
            action="store_true",
            help="etcd: the config is every key under --key (ending in /)",
        )


def run(args: argparse.Namespace) -> int:
    """`run` runs a parsed ``config`` command; 1 when it is refused."""
    try:
        store = _store(args)
    except ValueError as exc:
        print(f"ratefuse config: {exc}", file=sys.stderr)
        return 1
    try:
        if args.config_command == "push":
            return _push(store, args)
        if args.config_command == "show":
            return _show(store)
        return _status(store)
    except (ConfigError, VersionConflictError, StoreError) as exc:
        print(f"ratefuse config {args.config_command}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _store(args: argparse.Namespace) -> RedisConfigStore | EtcdConfigStore:
    prefix = getattr(args, "prefix", False)
    if args.redis is not None:
        if prefix:
            raise ValueError("--prefix is for etcd only")
        return RedisConfigStore(args.redis, key=args.key or DEFAULT_REDIS_KEY)
    return EtcdConfigStore(args.etcd, key=args.key or DEFAULT_ETCD_KEY, prefix=prefix)


def _push(store: RedisConfigStore | EtcdConfigStore, args: argparse.Namespace) -> int:
    try:
        with open(args.file, "rb") as file:
            text = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{args.file}: cannot read: {exc}"]) from exc
    version = push_config(store, text, allow_removals=args.allow_removals)
    print(f"pushed {args.file} as version {version} to {store.describe()}")
    return 0


def _show(store: RedisConfigStore | EtcdConfigStore) -> int:
    document = store.read()
    if document is None:
        print(f"# no config in {store.describe()}")
        return 0
    print(f"# version {document.version} in {store.describe()}")
    sys.stdout.write(document.text.decode("utf-8", errors="replace"))
    return 0


def _status(store: RedisConfigStore | EtcdConfigStore) -> int:
    document = store.read()
    stored = None if document is None else document.version
    acks = store.acknowledgements()
    print(f"stored version: {stored} in {store.describe()}")
    width = max([len("member"), *(len(ack.member) for ack in acks)])
    print(f"{'member':<{width}}  {'version':>15}  {'expires in':>10}  current")
    for ack in acks:
        current = "yes" if ack.version == stored else "no"
        print(
            f"{ack.member:<{width}}  {ack.version:>15}  "
            f"{ack.expires_in:>9.1f}s  {current}"
        )
    running = sum(ack.version == stored for ack in acks)
    print(f"{running} of {len(acks)} processes run the stored version")
    return 0
