"""The `goe-bridge` command line: run | demo | check-config | schema | decode | probe | simulate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, config, logs
from .exitcodes import EXIT_CONFIG, EXIT_ERROR, EXIT_OK


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        help="YAML config file (default: ./config.yaml, then /etc/goe-bridge/config.yaml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="goe-bridge",
        description="Connects go-e EV chargers to MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"goe-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the bridge")
    _add_config_arg(p)

    p = sub.add_parser(
        "demo", help="simulator + embedded broker + bridge, printing the live topic flow"
    )
    p.add_argument("--api", choices=("v1", "v2"), default="v2")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument(
        "--speed", type=float, default=1.0, help="run the scripted scenario this much faster"
    )
    p.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "amqtt"),
        default="auto",
        help="the embedded broker (auto: mosquitto when installed, else amqtt)",
    )

    p = sub.add_parser(
        "health", help="exit 0 if the running bridge is healthy (for Docker HEALTHCHECK)"
    )
    p.add_argument("url", nargs="?", default="http://127.0.0.1:8080/healthz")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--quiet", "-q", action="store_true")

    p = sub.add_parser("check-config", help="validate a config file and print it normalized")
    _add_config_arg(p)
    p.add_argument(
        "--user",
        help="check as this user, the one the service runs as: every file the config names "
        "must be readable for it (default, as root: the User= of the installed "
        "goe-bridge.service when it runs this config file)",
    )

    sub.add_parser("schema", help="print the config's JSON Schema (goe-bridge.schema.json)")

    p = sub.add_parser(
        "addon-config",
        help="the Home Assistant add-on's options + Supervisor MQTT service → a config (YAML)",
    )
    p.add_argument("--options", default="/data/options.json", help="the add-on's options.json")
    p.add_argument("--mqtt", default="-", help="the Supervisor's MQTT service as JSON (- = stdin)")

    p = sub.add_parser(
        "addon-run",
        help="the Home Assistant add-on: its options and the Supervisor's MQTT broker → run",
    )
    p.add_argument("--options", default="/data/options.json", help="the add-on's options.json")
    p.add_argument(
        "--supervisor", default=None, help="the Supervisor's API (default: http://supervisor)"
    )

    p = sub.add_parser("decode", help="decode a go-e status payload (JSON) into SI fields")
    p.add_argument("file", help="a JSON file, or - for standard input")
    p.add_argument("--api", choices=("auto", "v1", "v2"), default="auto")
    p.add_argument("--raw", action="store_true", help="also print the raw keys (secrets removed)")

    p = sub.add_parser(
        "probe",
        help="talk to a charger (or the simulator) and print its status",
        description="probe http://HOST[:PORT] | --cloud v1|v2 --serial S --token-file F | "
        "--mqtt HOST[:PORT] --serial S",
    )
    p.add_argument("url", nargs="?", help="http://HOST[:PORT] of the charger (local HTTP API)")
    p.add_argument("--api", choices=("auto", "v1", "v2"), default="auto")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--cloud", choices=("v1", "v2"), help="ask the go-e cloud instead")
    p.add_argument("--serial", help="the charger's serial (cloud v2, MQTT)")
    p.add_argument("--token-file", help="file holding the cloud token (or GOE_TOKEN)")
    p.add_argument("--base-url", help="cloud base URL (default: the go-e service)")
    p.add_argument("--mqtt", metavar="HOST[:PORT]", help="listen to the charger's own MQTT")
    p.add_argument("--prefix", default="go-eCharger", help="go-e MQTT topic prefix")
    p.add_argument("--username", help="MQTT user (password from GOE_MQTT_PASSWORD)")

    p = sub.add_parser("simulate", help="run the built-in go-e simulator")
    p.add_argument(
        "--profile",
        default=None,
        metavar="NAME",
        help="a go-e firmware line with its quirks (docs/firmware-matrix.md): "
        "v2-033, v2-040, v2-041, v2-042.0, v3-051, v3-052, v3-055.5, v3-056, v4-60, gemini, "
        "pro-60 (default: v3-056 for API v2, v2-041 for API v1)",
    )
    p.add_argument("--api", choices=("v1", "v2"), default=None, help="default: the profile's")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="first HTTP port")
    p.add_argument("--count", type=int, default=1, help="chargers on consecutive ports")
    p.add_argument("--serial", default="000001", help="serial of the first charger")
    p.add_argument("--firmware", default=None)
    p.add_argument("--legacy-v1", action="store_true", help="v2 charger also answers API v1")
    p.add_argument(
        "--plug-after", type=float, default=None, help="plug a car in after this many seconds"
    )
    p.add_argument("--car-max-current", type=float, default=16.0)
    p.add_argument("--car-phases", type=int, choices=(1, 2, 3), default=3)
    p.add_argument("--car-energy-wh", type=float, default=20_000.0)
    p.add_argument("--phase-switch-pause", type=float, default=10.0)
    p.add_argument(
        "--noise",
        action="store_true",
        help="measurement noise on voltages, currents, frequency, temperatures and WiFi "
        "signal, as a real charger reports them",
    )
    p.add_argument("--cloud-port", type=int, default=None, help="also serve the go-e cloud API")
    p.add_argument("--cloud-token", default="sim-token", help="token the cloud front-end wants")
    p.add_argument(
        "--cloud-min-interval",
        type=float,
        default=0.0,
        help="cloud v1: status calls closer than this answer 'rate limiting'",
    )
    p.add_argument("--mqtt", metavar="HOST[:PORT]", help="publish as go-e MQTT to this broker")
    p.add_argument("--mqtt-prefix", default="go-eCharger")
    p.add_argument(
        "--mqtt-read-only", action="store_true", help="ignore MQTT writes (write access off)"
    )
    return parser


def default_config_path() -> str | None:
    for candidate in ("config.yaml", "/etc/goe-bridge/config.yaml"):
        if Path(candidate).is_file():
            return candidate
    return None


def load_config_or_exit(path: str | None) -> config.Config:
    import os

    path = path or default_config_path()
    try:
        if (path is None or not Path(path).exists()) and config.has_env_config(os.environ):
            # the simple case from `docker run -e GOE_BRIDGE__…` alone
            where = f"at {path}" if path else "(no ./config.yaml or /etc/goe-bridge/config.yaml)"
            print(f"no config file {where}: the config comes from the environment "
                  "(GOE_BRIDGE__… variables)", file=sys.stderr)  # fmt: skip
            path = "environment"
            return config.from_environment(os.environ)
        if path is None:
            print(
                "error: no config file; pass -c FILE (see config.example.yaml), or set "
                "GOE_BRIDGE__… variables",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_CONFIG)
        return config.load(path)
    except config.ConfigError as exc:
        _print_problems(path or "config", exc.problems)
        raise SystemExit(EXIT_CONFIG) from None


def _print_problems(source: str, problems: Sequence[str]) -> None:
    print(f"{source}: {len(problems)} problem(s):", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


SERVICE_UNIT = Path("/etc/systemd/system/goe-bridge.service")


def service_user(config_path: str, unit: Path = SERVICE_UNIT) -> str | None:
    """The User= of the installed unit, if its ExecStart runs this config file."""
    try:
        text = unit.read_text("utf-8")
    except OSError:
        return None
    user = None
    runs_it = False
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "User":
            user = value.strip()
        elif key == "ExecStart":
            wanted = Path(config_path).resolve()
            for flag, arg in itertools.pairwise(value.split()):
                if flag in ("-c", "--config") and Path(arg).resolve() == wanted:
                    runs_it = True
    return user if runs_it else None


def _unreadable_files(cfg: config.Config) -> list[str]:
    """Files the config names that are read only when the bridge connects (TLS): the secret
    files were read while loading."""
    problems = []
    for name, broker in cfg.brokers.items():
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(broker.tls, key)
            if not value:
                continue
            try:
                with open(value, "rb"):
                    pass
            except OSError as exc:
                problems.append(f"brokers.{name}.tls.{key}: cannot read {value}: {exc.strerror}")
    return problems


def _check_as(user: str, args: argparse.Namespace) -> int:
    """check-config as `user`, reading every file as the service will: a child process that
    drops to the user's uid, gid and groups (no exec, so no file of the interpreter itself
    needs to be readable for that user)."""
    import grp
    import os
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        print(f"error: there is no user {user!r} on this machine", file=sys.stderr)
        return EXIT_CONFIG
    if os.geteuid() != 0:
        print(
            f"error: only root can check as the user {user}: run "
            f"sudo -u {user} goe-bridge check-config -c …",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    load_config_or_exit(args.config)  # as root first: problems that are not about access
    groups = os.getgrouplist(user, entry.pw_gid)
    names = ", ".join(grp.getgrgid(g).gr_name for g in groups)
    print(f"checking as the user {user} (groups: {names})", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller
        code = EXIT_ERROR
        try:
            os.setgroups(groups)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            code = _check(args, user)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else EXIT_ERROR
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def cmd_check_config(args: argparse.Namespace) -> int:
    import os
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    user = args.user
    path = args.config or default_config_path()
    if user is None and os.geteuid() == 0 and path:
        user = service_user(path)
        if user:
            print(f"{SERVICE_UNIT} runs {path} as the user {user}", file=sys.stderr)
    if user and user != me:
        return _check_as(user, args)
    return _check(args, user)


def _check(args: argparse.Namespace, user: str | None) -> int:
    cfg = load_config_or_exit(args.config)
    problems = _unreadable_files(cfg)
    if not cfg.chargers:
        problems.append("chargers: no charger configured (see config.example.yaml)")
    if problems:
        _print_problems(cfg.source or "config", problems)
        return EXIT_CONFIG
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(config.normalized(cfg), indent=2))
    who = f" for the user {user}" if user else ""
    print(f"{cfg.source}: OK{who}, {len(cfg.chargers)} charger(s)", file=sys.stderr)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(config.schema(), indent=2))
    return EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    from .goe import detect

    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    try:
        status, meta = detect.decode_text(text, args.api)
    except detect.DecodeFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    out: dict[str, Any] = status.fields()
    out.update(meta)
    if args.raw:
        out["raw"] = dict(status.raw)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return EXIT_OK


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text}: the port must be a number from 1 to 65535")
    return host, int(port)


def _print_status(title: str, transport_name: str, status: Any, as_json: bool) -> None:
    fields = status.fields()
    if as_json:
        print(json.dumps(fields, indent=2))
        return
    print(title)
    print(f"  API version : {status.api_version.value} ({transport_name})")
    print(f"  firmware    : {status.firmware or '?'}")
    print(f"  serial      : {status.serial or '?'}")
    if status.hardware:
        print(f"  hardware    : {status.hardware}")
    print()
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        shown = json.dumps(value) if isinstance(value, bool | list | dict) else value
        print(f"  {key:<{width}}  {shown}")


def cmd_probe(args: argparse.Namespace) -> int:
    import os

    from .goe.model import ChargerError
    from .goe.transports.base import Transport
    from .goe.transports.factory import make_transport

    async def probe_http() -> tuple[str, str, Transport]:
        url = args.url if "://" in args.url else f"http://{args.url}"
        scheme, _, rest = url.partition("://")
        if scheme != "http":
            raise ValueError(f"{url}: only http:// URLs are supported for probe")
        host, port = _host_port(rest.split("/", 1)[0], 80)
        conn = config.HttpConnection(
            type="http", host=host, port=port, api=args.api, timeout_s=args.timeout
        )
        return f"go-e charger at {url}", "local HTTP", make_transport(conn)

    async def probe_cloud() -> tuple[str, str, Transport]:
        token = os.environ.get("GOE_TOKEN", "")
        if args.token_file:
            token = Path(args.token_file).read_text("utf-8").strip()  # noqa: ASYNC240 - once, tiny
        if not token:
            raise ValueError("--cloud needs --token-file FILE (or GOE_TOKEN)")
        if args.cloud == "v2" and not args.serial:
            raise ValueError("--cloud v2 needs --serial")
        conn = config.CloudConnection(
            type="cloud", serial=args.serial or "", token=config.Secret(token), api=args.cloud,
            timeout_s=args.timeout, base_url=args.base_url,
        )  # fmt: skip
        title = f"go-e charger via the go-e cloud ({args.cloud})"
        return title, f"cloud {args.cloud}", make_transport(conn)

    async def run() -> int:
        transport: Transport | None = None
        try:
            if args.mqtt:
                return await probe_mqtt(args)
            if args.cloud:
                title, name, transport = await probe_cloud()
            elif args.url:
                title, name, transport = await probe_http()
            else:
                print("error: give http://HOST, --cloud v1|v2 or --mqtt HOST", file=sys.stderr)
                return EXIT_ERROR
            status = await transport.read_status()
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except ChargerError as exc:
            print(f"error: {args.url or args.cloud or args.mqtt}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        finally:
            if transport is not None:
                await transport.close()
        _print_status(title, name, status, args.json)
        return EXIT_OK

    return asyncio.run(run())


async def probe_mqtt(args: argparse.Namespace) -> int:
    """Subscribe to the charger's own MQTT output until one status arrives."""
    import os

    from .config import BrokerConfig, Secret
    from .goe.transports.mqtt import GoeMqttTransport
    from .mqtt.link import BrokerLink

    if not args.serial:
        print("error: --mqtt needs --serial", file=sys.stderr)
        return EXIT_ERROR
    try:
        host, port = _host_port(args.mqtt, 1883)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    password = os.environ.get("GOE_MQTT_PASSWORD")
    link = BrokerLink(
        "probe",
        BrokerConfig(
            host=host,
            port=port,
            username=args.username,
            password=Secret(password) if password else None,
        ),
    )
    api = args.api
    transport = GoeMqttTransport(link, args.serial, prefix=args.prefix, api=api)
    got: asyncio.Queue[Any] = asyncio.Queue()
    runner = asyncio.create_task(link.run(), name="probe-mqtt")
    watcher = asyncio.create_task(transport.run(got.put_nowait, lambda reason: None))
    try:
        async with asyncio.timeout(max(args.timeout, 12)):
            status = await got.get()
    except TimeoutError:
        print(
            f"error: no go-e status on {host}:{port} under {args.prefix}/{args.serial}/ "
            f"(also tried the other slash form); is the charger's MQTT on and the prefix right?",
            file=sys.stderr,
        )
        return EXIT_ERROR
    finally:
        for task in (watcher, runner):
            task.cancel()
        for task in (watcher, runner):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    _print_status(
        f"go-e charger {args.serial} on MQTT {host}:{port} ({transport.write_root})",
        "go-e MQTT",
        status,
        args.json,
    )
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import profiles
    from .simulator.charger import Car, SimCharger
    from .simulator.cloud import CloudFrontend, CloudState
    from .simulator.http import HttpFrontend
    from .simulator.mqtt import MqttFrontend

    if args.profile is not None and args.profile not in profiles.PROFILES:
        print(f"error: unknown profile {args.profile!r}; choose one of "
              f"{', '.join(profiles.PROFILES)}", file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    try:
        mqtt_at = _host_port(args.mqtt, 1883) if args.mqtt else None
    except ValueError as exc:
        print(f"error: --mqtt {exc}", file=sys.stderr)
        return EXIT_CONFIG

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        frontends = []
        others: list[Any] = []
        base_serial = int(args.serial) if args.serial.isdigit() else 1
        for i in range(args.count):
            serial = args.serial if i == 0 else f"{base_serial + i:06d}"
            sim = SimCharger(
                api=args.api,
                profile=args.profile,
                serial=serial,
                firmware=args.firmware,
                legacy_v1=args.legacy_v1,
                phase_switch_pause_s=args.phase_switch_pause,
                noise=args.noise,
            )
            fe = await HttpFrontend(sim, args.host, args.port + i if args.port else 0).start()
            frontends.append(fe)
            print(f"simulated go-e charger {serial} (API {sim.api}, {sim.spec.name}: "
                  f"{sim.spec.title}) on {fe.url}", flush=True)  # fmt: skip
            if args.cloud_port is not None:
                state = CloudState(sim, args.cloud_token, args.cloud_min_interval)
                cloud = await CloudFrontend(state, args.host, args.cloud_port + i).start()
                others.append(cloud)
                print(f"  go-e cloud API {sim.api} on {cloud.url}", flush=True)
            if mqtt_at is not None:
                mhost, mport = mqtt_at
                mqtt = await MqttFrontend(
                    sim, mhost, mport, prefix=args.mqtt_prefix,
                    write_access=not args.mqtt_read_only,
                ).start()  # fmt: skip
                others.append(mqtt)
                print(f"  go-e MQTT {sim.api} on {mhost}:{mport} as {mqtt.root}", flush=True)

        async def plug_later() -> None:
            await asyncio.sleep(args.plug_after)
            for fe in frontends:
                fe.charger.plug(Car(args.car_max_current, args.car_phases, args.car_energy_wh))
            print("car plugged in", flush=True)

        async with asyncio.TaskGroup() as tg:
            if args.plug_after is not None:
                tg.create_task(plug_later(), name="sim-plug")
            await stop.wait()
            for task in asyncio.all_tasks():
                if task.get_name() == "sim-plug":
                    task.cancel()
        for other in others:
            await other.close()
        for fe in frontends:
            await fe.close()

    asyncio.run(serve())
    return EXIT_OK


def cmd_addon_config(args: argparse.Namespace) -> int:
    import yaml

    from . import addon

    try:
        options = json.loads(Path(args.options).read_text("utf-8"))
        mqtt_text = sys.stdin.read() if args.mqtt == "-" else Path(args.mqtt).read_text("utf-8")
        mqtt = json.loads(mqtt_text or "{}")
    except (OSError, ValueError) as exc:
        print(f"add-on config: cannot read the options or the MQTT service: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not isinstance(options, dict) or not isinstance(mqtt, dict):
        print("add-on config: options and MQTT service must be JSON objects", file=sys.stderr)
        return EXIT_CONFIG
    data = addon.config_from_options(options, mqtt)
    try:
        config.from_data(data, env={})
    except config.ConfigError as exc:
        print("add-on config: please fix these options:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {addon.option_path(problem)}", file=sys.stderr)
        return EXIT_CONFIG
    print(yaml.safe_dump(data, sort_keys=False), end="")
    return EXIT_OK


def cmd_addon_run(args: argparse.Namespace) -> int:
    """The add-on's entry point (config.json, the Dockerfile's add-on stage): no shell script,
    no temporary file holding the broker's password."""
    import os

    from . import addon, service

    try:
        options = json.loads(Path(args.options).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        print(f"add-on: cannot read the options {args.options}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not isinstance(options, dict):
        print(f"add-on: {args.options} is not a JSON object", file=sys.stderr)
        return EXIT_CONFIG
    token = os.environ.get("SUPERVISOR_TOKEN", "")
    try:
        mqtt = addon.supervisor_mqtt(args.supervisor or addon.SUPERVISOR_URL, token)
    except addon.AddonError as exc:
        print(f"add-on: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        cfg = config.from_data(addon.config_from_options(options, mqtt), env={})
    except config.ConfigError as exc:
        print("add-on: please fix these options:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {addon.option_path(problem)}", file=sys.stderr)
        return EXIT_CONFIG
    return service.main(cfg)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config_or_exit(args.config)
    from . import service

    return service.main(cfg)


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(api=args.api, duration=args.duration, speed=args.speed, broker=args.broker)


def cmd_health(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    url = args.url if "://" in args.url else f"http://{args.url}"
    if not url.rstrip("/").endswith("/healthz"):
        url = url.rstrip("/") + "/healthz"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            body, code = response.read().decode(), response.status
    except urllib.error.HTTPError as exc:
        body, code = exc.read().decode(errors="replace"), exc.code
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return EXIT_ERROR
    try:
        problems = json.loads(body).get("problems", [])
    except ValueError:
        problems = [body[:200]]
    if code == 200:
        if not args.quiet:
            print("healthy")
        return EXIT_OK
    print("unhealthy: " + ("; ".join(problems) or f"HTTP {code}"), file=sys.stderr)
    return EXIT_ERROR


COMMANDS = {
    "health": cmd_health,
    "run": cmd_run,
    "demo": cmd_demo,
    "check-config": cmd_check_config,
    "schema": cmd_schema,
    "addon-config": cmd_addon_config,
    "addon-run": cmd_addon_run,
    "decode": cmd_decode,
    "probe": cmd_probe,
    "simulate": cmd_simulate,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("run", "demo", "health", "addon-run"):
        logs.setup("warning", "console")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            return COMMANDS[args.command](args)
    except BrokenPipeError:
        # `goe-bridge check-config | head`: the reader has what it wanted; Python would
        # complain once more when it flushes stdout at exit (docs.python.org, signal: "Note
        # on SIGPIPE")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
