"""One pass of the improvement loop, resumable: dataset -> tune -> register -> evaluate -> gate ->
canary start -> canary -> promote or roll back.

Each step reads the run's state, does its work and commits its outputs with the move to the next
step (``state.step_done``); a crash resumes at the first uncommitted step, which runs again. Steps:
- dataset: ``treadle dataset build`` (feedback.dataset.build) of the approved items into a new version, with
  the configured fixed mix (e.g. the safety dataset) as replay rows: every training record has lineage;
- tune: ``treadle tune`` from the base model on its ``sft.jsonl`` (or the configured method's file),
  resuming from a checkpoint when one exists; with ``tune.warm_start`` it continues production's adapter (the
  run's ``parent``, fixed at the dataset step), and the build counts only the parent's datasets as seen;
- register: the adapter as version ``{alias}-r{run}`` with its lineage (dataset id, the parent's datasets, run
  record);
- evaluate: candidate and production on the gating sets (production's result reused when the
  gating spec is the same);
- gate: ``run_loop_gate``; a fail ends the run (outcome ``gate_failed``), nothing is served;
- canary_start: load the adapter on every replica (gateway fan-out), route ``share`` of the alias to
  it (sticky per user), record the split;
- canary: poll the online signals (``signals``) and ``canary.decide`` until promote or roll back
  (or ``max_minutes``: roll back);
- a rollback sets the gateway route back to production *before* recording it, so once the store
  records a rollback no request is routed to the candidate; the adapter is then unloaded.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from treadle.loop import state as st
from treadle.loop.config import LoopConfig
from treadle.loop.floors import reached_floors
from treadle.registry import registry as reg
from treadle.store.db import Store
from treadle.store.models import utcnow

log = logging.getLogger("treadle.loop")
DATA_FILE = {"sft": "sft.jsonl", "dpo": "preference.jsonl", "kto": "kto.jsonl"}


def new_items(store: Store, cfg: LoopConfig) -> int:
    """Approved or corrected items that the next dataset build would take (its name, mix and user filters)."""
    from treadle.feedback.dataset import wanted_user

    d = cfg.dataset
    return st.new_approved(store, d.name, d.fixed_mix, wanted_user(d.users, d.exclude_users))


@dataclass
class Loop:
    cfg: LoopConfig
    store: Store
    fleet: object  # treadle.loop.fleet.FleetClient (or a test double with the same methods)
    sleep: object = time.sleep
    progress: bool = False
    checks: object = None  # signals.LiveChecks, built on first canary poll
    events: list[str] = field(default_factory=list)

    def say(self, msg: str) -> None:
        self.events.append(msg)
        log.info(msg)
        if self.progress:
            print(f"[loop] {msg}", flush=True)

    # ---- setup and trigger -------------------------------------------------------------------
    def ensure_production(self) -> str:
        """Register and promote the configured production version on first use, afterwards make the gateway
        serve the alias's recorded split; returns production."""
        cur = reg.alias_state(self.store, self.cfg.alias)
        if cur is not None and cur.production:
            self._serve_recorded(cur)
            return cur.production
        try:
            reg.register(self.store, self.cfg.production, "base", self.cfg.base_model, actor="loop")
        except reg.RegistryError:
            pass  # already registered
        self.fleet.set_route(self.cfg.alias, {self.cfg.production: 1.0})
        reg.promote(self.store, self.cfg.alias, self.cfg.production, "loop", "initial production version")
        return self.cfg.production

    def _serve_recorded(self, cur: reg.AliasState) -> None:
        """Make the gateway serve the alias as the store records it, when it does not (a restarted gateway
        forgets routes and loaded adapters): load the split's adapters, then set the route."""
        live = {r["alias"]: r["versions"] for r in self.fleet.routes().get("routes", [])}
        if live.get(cur.name) == cur.weights:
            return
        for name in cur.weights:
            v = reg.get(self.store, name)
            if v["kind"] == "adapter" and v["path"]:
                self._ensure_loaded(name, v["path"])
        self.fleet.set_route(cur.name, cur.weights)
        self.say(f"alias {cur.name}: the gateway served {live.get(cur.name)}; restored the recorded split {cur.weights}")

    def triggered(self) -> dict | None:
        n = new_items(self.store, self.cfg)
        if n >= self.cfg.trigger.min_new_approved:
            return {"reason": "new_approved", "count": n}
        every = self.cfg.trigger.every_minutes
        last = st.last_run_time(self.store, self.cfg.alias)
        if every and n > 0 and (last is None or (utcnow() - last).total_seconds() >= every * 60):
            return {"reason": "schedule", "count": n}
        return None

    # ---- one pass ----------------------------------------------------------------------------
    def run_once(self, force: bool = False) -> st.RunView | None:
        """Resume the open run, or start one when triggered (or ``force``); returns the finished run."""
        self.ensure_production()
        run = st.open_run(self.store, self.cfg.alias)
        if run is None:
            trig = self.triggered() or ({"reason": "forced"} if force else None)
            if trig is None:
                return None
            run = st.start_run(self.store, self.cfg.alias, trig)
            self.say(f"run {run.id} started ({trig})")
        else:
            self.say(f"run {run.id} resumed at step {run.step}")
        while run.status == "running":
            step = run.step
            sid = st.step_started(self.store, run.id, step)
            try:
                run = getattr(self, f"_step_{step}")(run, sid)
            except Exception as e:
                st.step_failed(self.store, run.id, sid, repr(e))
                raise
        return run

    def _work(self, run: st.RunView) -> Path:
        p = self.cfg.work / f"run-{run.id}"
        p.mkdir(parents=True, exist_ok=True)
        return p

    def _step_dataset(self, run: st.RunView, sid: int) -> st.RunView:
        from treadle.feedback.dataset import BuildOptions, build

        d = self.cfg.dataset
        out = self._work(run) / "dataset"
        parent, seen = self._warm_start()
        manifest = build(self.store, out, BuildOptions(name=d.name, dev_share=d.dev_share, replay_share=d.replay_share,
                                                       embed=d.embed, template_share=d.template_share,
                                                       seed=d.seed, fixed_mix=d.fixed_mix,
                                                       users=d.users, exclude_users=d.exclude_users,
                                                       replay_all=d.replay_all, fixed_mix_share=d.fixed_mix_share,
                                                       seen_datasets=seen))
        ds_id = manifest.get("dataset_id") or manifest.get("id")
        self.say(f"run {run.id}: dataset {d.name} v{manifest.get('version')} ({manifest.get('counts')})"
                 + (f", continuing {parent}" if parent else ""))
        return st.step_done(self.store, run.id, sid, "tune", {"dataset_dir": str(out), "dataset_id": ds_id,
                                                             "dataset_version": manifest.get("version"),
                                                             "parent": parent},
                            detail={"manifest": {k: manifest.get(k) for k in ("version", "content_hash", "counts",
                                                                               "fixed_mix")}})

    def _warm_start(self) -> tuple[str | None, tuple[int, ...] | None]:
        """(the version this run continues, the datasets it learned) for the build's ``seen_datasets``.

        Without ``tune.warm_start``: (None, None), every earlier build counts as seen. With it: production and its
        datasets when production is an adapter on this base; else (None, ()): a new adapter, nothing seen."""
        if not self.cfg.tune.warm_start:
            return None, None
        v = reg.get(self.store, reg.alias_state(self.store, self.cfg.alias).production)
        if v["kind"] == "adapter" and v["path"] and v["base_model"] == self.cfg.base_model:
            return v["name"], tuple(v["dataset_ids"])
        self.say(f"warm start: production {v['name']} is a {v['kind']} model, not an adapter on "
                 f"{self.cfg.base_model}; this run trains a new adapter")
        return None, ()

    def _step_tune(self, run: st.RunView, sid: int) -> st.RunView:
        from treadle.tuning import config_for, tune

        t = self.cfg.tune
        data = Path(run.state["dataset_dir"]) / DATA_FILE[t.method]
        out = self._work(run) / "adapter"
        resume = (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir())
        parent = run.state.get("parent")
        init = {"init_adapter": reg.get(self.store, parent)["path"]} if parent else {}
        conf = config_for(t.method, **{"progress": self.progress, **t.args, "data": str(data), "out": str(out),
                                       "model": self.cfg.base_model, "resume": resume, **init})
        record = tune(conf)
        m = record.get("metrics", {})
        self.say(f"run {run.id}: tuned {t.method} in {record.get('wall_s', 0):.0f} s "
                 f"(loss {m.get('first_loss')} -> {m.get('final_loss')})")
        return st.step_done(self.store, run.id, sid, "register", {"adapter_dir": str(out)},
                            detail={"resumed": resume, "first_loss": m.get("first_loss"),
                                    "final_loss": m.get("final_loss"), "wall_s": record.get("wall_s")})

    def _step_register(self, run: st.RunView, sid: int) -> st.RunView:
        from treadle.tuning.record import file_sha256

        name = f"{self.cfg.alias}-r{run.id}"
        out = Path(run.state["adapter_dir"])
        rec_file = out / "run_record.json"
        record = json.loads(rec_file.read_text()) if rec_file.is_file() else None
        weights = out / "adapter_model.safetensors"
        digest = file_sha256(weights) if weights.is_file() else None
        parent = run.state.get("parent")
        datasets = list(reg.get(self.store, parent)["dataset_ids"]) if parent else []  # what its weights hold too
        datasets += [run.state["dataset_id"]] if run.state.get("dataset_id") is not None else []
        try:
            reg.register(self.store, name, "adapter", self.cfg.base_model, str(out), digest, datasets, record, "loop",
                         notes=f"continued from {parent}" if parent else None)
        except reg.RegistryError:
            pass  # registered before a crash
        return st.step_done(self.store, run.id, sid, "evaluate", {"candidate": name}, candidate=name)

    def _step_evaluate(self, run: st.RunView, sid: int) -> st.RunView:
        from treadle.loop.evaluate import evaluate, gating_spec, load_gating_suites

        cand = run.state["candidate"]
        self._ensure_loaded(cand, run.state["adapter_dir"])  # served for the eval (not routed yet)
        prod = reg.alias_state(self.store, self.cfg.alias).production
        spec = gating_spec(self.cfg)
        prod_info = reg.show(self.store, prod)["evals"].get("gating")
        if not prod_info or prod_info.get("spec") != spec or not Path(prod_info["dir"], "summary.json").is_file():
            pdir = self.cfg.work / "evals" / prod
            evaluate(self.cfg, prod, pdir, load_gating_suites(self.cfg), self.progress)
            prod_info = {"dir": str(pdir), "spec": spec}
            reg.record_eval(self.store, prod, "gating", prod_info)
        self._warn_power(prod_info["dir"])
        cdir = self._work(run) / "eval-gating"
        evaluate(self.cfg, cand, cdir, load_gating_suites(self.cfg), self.progress)
        reg.record_eval(self.store, cand, "gating", {"dir": str(cdir), "spec": spec})
        return st.step_done(self.store, run.id, sid, "gate", {"cand_eval": str(cdir), "prod_eval": prod_info["dir"],
                                                             "production": prod})

    def _warn_power(self, prod_dir: str) -> None:
        """Say which gated metrics production's gating sets are too small to pass within their margin."""
        from treadle.evals.loop_gate import power_warnings
        from treadle.evals.results import load_results

        for w in power_warnings(load_results(prod_dir), self.cfg.gate):
            log.warning("gate power: %s", w)
            self.say(f"warning: gate power: {w}")

    def _step_gate(self, run: st.RunView, sid: int) -> st.RunView:
        import dataclasses

        from treadle.evals.loop_gate import run_loop_gate
        from treadle.evals.results import load_results

        policy = dataclasses.replace(self.cfg.gate, reached=reached_floors(self.store, self.cfg))
        verdict = run_loop_gate(load_results(run.state["cand_eval"]), load_results(run.state["prod_eval"]), policy)
        out = verdict.to_json()
        (self._work(run) / "gate-verdict.json").write_text(json.dumps(out, indent=1) + "\n")
        reg.record_gate(self.store, run.state["candidate"], out)
        self.say(f"run {run.id}: gate {'PASS' if verdict.passed else 'FAIL'}\n{verdict.to_text()}")
        if not verdict.passed:
            failed = "; ".join(f"{m.metric}: {', '.join(m.reasons)}" for m in verdict.metrics if not m.passed)
            self._unload(run.state["candidate"])
            st.step_done(self.store, run.id, sid, "finish", {"gate_passed": False})
            return st.finish_run(self.store, run.id, "gate_failed", failed)
        return st.step_done(self.store, run.id, sid, "canary_start", {"gate_passed": True})

    def _step_canary_start(self, run: st.RunView, sid: int) -> st.RunView:
        cand, share = run.state["candidate"], self.cfg.canary.policy.share
        prod = reg.alias_state(self.store, self.cfg.alias).production
        self._ensure_loaded(cand, run.state["adapter_dir"])
        self.fleet.set_route(self.cfg.alias, {prod: 1 - share, cand: share})
        reg.start_canary(self.store, self.cfg.alias, cand, share)
        started = utcnow().isoformat()
        self.say(f"run {run.id}: canary {cand} at {share:.0%} of {self.cfg.alias}")
        return st.step_done(self.store, run.id, sid, "canary", {"canary_started_at": started})

    def _step_canary(self, run: st.RunView, sid: int) -> st.RunView:
        from treadle.loop.canary import PROMOTE, ROLLBACK, decide
        from treadle.loop.signals import LiveChecks, look_sample_size, version_signals

        c = self.cfg.canary
        self.checks = self.checks or LiveChecks(c.safety_classifier)
        cand, prod = run.state["candidate"], run.state["production"]
        since = datetime.fromisoformat(run.state["canary_started_at"])
        deadline = time.monotonic() + c.max_minutes * 60
        while True:
            n = look_sample_size(self.store, cand, since, c.policy.requests_per_look, c.policy.looks, c.sample_per_look)
            sig_c = version_signals(self.store, cand, since, self.checks, n)
            sig_p = version_signals(self.store, prod, since, self.checks, n)
            d = decide(sig_c, sig_p, c.policy)
            if d.action in (PROMOTE, ROLLBACK) or time.monotonic() > deadline:
                break
            self.sleep(c.poll_seconds)
        reason = "; ".join(d.reasons) if d.action != "continue" else f"canary ran out of time ({c.max_minutes} min)"
        detail = {"decision": d.to_json(), "candidate_requests": sig_c.requests, "production_requests": sig_p.requests}
        if d.action == PROMOTE:
            self.fleet.set_route(self.cfg.alias, {cand: 1.0})
            reg.promote(self.store, self.cfg.alias, cand, "loop", f"canary: {reason}")
            self.say(f"run {run.id}: promoted {cand} ({reason})")
            st.step_done(self.store, run.id, sid, "finish", {"canary": detail}, detail=detail)
            done = st.finish_run(self.store, run.id, "promoted", reason)
            if self.cfg.full_suites_on_promotion:  # after the run is recorded: a crash here loses only this eval
                self._full_eval(run, cand)
            return done
        self.fleet.set_route(self.cfg.alias, {prod: 1.0})  # first stop routing, then record
        reg.rollback(self.store, self.cfg.alias, "loop", f"canary: {reason}")
        self._unload(cand)
        self.say(f"run {run.id}: rolled back {cand} ({reason})")
        st.step_done(self.store, run.id, sid, "finish", {"canary": detail}, detail=detail)
        return st.finish_run(self.store, run.id, "rolled_back", reason)

    def _full_eval(self, run: st.RunView, version: str) -> None:
        """Every item of the configured suites on a promoted version (minutes to hours), kept as its 'full' eval."""
        from treadle.loop.evaluate import evaluate, load_gating_suites

        out = self._work(run) / "eval-full"
        evaluate(self.cfg, version, out, load_gating_suites(self.cfg, full=True, names=self.cfg.full_suites_on_promotion),
                 self.progress)
        reg.record_eval(self.store, version, "full", {"dir": str(out)})

    def _ensure_loaded(self, name: str, path: str) -> None:
        if name not in self.fleet.models():
            self.fleet.load_adapter(name, str(Path(path).resolve()))

    def _unload(self, name: str) -> None:
        try:
            self.fleet.unload_adapter(name)
        except Exception as e:  # noqa: BLE001 - an adapter left loaded is served to nobody: log and go on
            log.warning("unloading %s failed: %r", name, e)
