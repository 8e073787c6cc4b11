// Starts the real binaries with exactly the flags and environment a chart render gives them, to
// prove every rendered flag and ANCHORD_* variable is accepted (a flag the chart invents, a value
// out of range or a provider combination the binaries reject fails here, not in the cluster).
//
//   node run-rendered.cjs TOOLS_DIR RENDER.yaml HASHER SUBMITTER POLLER SANDBOX
//
// For every anchord Deployment: container args + env + the envFrom ConfigMap's data. Only what
// cannot exist outside a pod is rewritten: listen addresses 0.0.0.0:N -> 127.0.0.1:0, the mounted
// directories (/var/lib/anchord, /etc/anchord/provider, /etc/anchord/internal, /tmp, the evidence
// root) -> scratch dirs, with placeholder key (and internal token) files for every one referenced.
// The database URL file (/etc/anchord/database/KEY, database.existingSecret) holds
// $ANCHORD_RENDERED_DATABASE_URL: a real, throwaway PostgreSQL check.sh starts, so the submitter
// and the poller really open and migrate it. A --port-file is appended; the program must write it
// (it is serving) within 20 s, then it gets SIGTERM and must exit 0.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawn } = require("child_process");
const { createRequire } = require("module");

const [toolsDir, render, ...bins] = process.argv.slice(2);
if (!toolsDir || !render || bins.length !== 4) {
  console.error("usage: run-rendered.cjs TOOLS_DIR RENDER.yaml HASHER SUBMITTER POLLER SANDBOX");
  process.exit(2);
}
const binary = { hasher: bins[0], submitter: bins[1], poller: bins[2], sandbox: bins[3] };
const YAML = createRequire(path.join(path.resolve(toolsDir), "node_modules", "noop.js"))("yaml");

const docs = YAML.parseAllDocuments(fs.readFileSync(render, "utf8")).map((d) => d.toJSON()).filter(Boolean);
const configMaps = {};
for (const d of docs) if (d.kind === "ConfigMap") configMaps[d.metadata.name] = d.data || {};

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "anchord-rendered-"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function runOne(name, component, container) {
  const dir = path.join(scratch, name);
  const keys = path.join(dir, "keys");
  const database = path.join(dir, "database");
  for (const sub of ["data", "keys", "database", "tmp", "evidence"]) fs.mkdirSync(path.join(dir, sub), { recursive: true });
  const mounts = (container.volumeMounts || []).map((m) => m.mountPath);
  const target = (m) => m === "/etc/anchord/provider" || m === "/etc/anchord/internal" ? keys
    : m === "/etc/anchord/database" ? database
    : m === "/var/lib/anchord" ? path.join(dir, "data")
    : m === "/tmp" ? path.join(dir, "tmp") : path.join(dir, "evidence");
  // One pass, longest mount first, whole path components only.
  const esc = (x) => x.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const mountRe = mounts.length
    ? new RegExp(`(${[...mounts].sort((a, b) => b.length - a.length).map(esc).join("|")})(?=/|$|,)`, "g") : null;
  const rewrite = (s) => {
    s = String(s).replace(/0\.0\.0\.0:\d+/g, "127.0.0.1:0");
    return mountRe ? s.replace(mountRe, (m) => target(m)) : s;
  };
  const env = { PATH: process.env.PATH };
  for (const ef of container.envFrom || []) {
    const cm = configMaps[ef.configMapRef.name];
    if (!cm) throw new Error(`${name}: ConfigMap ${ef.configMapRef.name} is not in the render`);
    for (const [k, v] of Object.entries(cm)) env[k] = rewrite(v);
  }
  for (const e of container.env || []) env[e.name] = rewrite(e.value);
  const args = (container.args || []).map(rewrite);
  // Placeholder key files for every key file the render points at.
  for (const v of [...Object.values(env), ...args]) {
    for (const m of String(v).matchAll(new RegExp(`${esc(keys)}/([-._a-zA-Z0-9]+)`, "g")))
      fs.writeFileSync(path.join(keys, m[1]), `placeholder-${m[1]}\n`, { mode: 0o600 });
    for (const m of String(v).matchAll(new RegExp(`${esc(database)}/([-._a-zA-Z0-9]+)`, "g"))) {
      if (!process.env.ANCHORD_RENDERED_DATABASE_URL) {
        throw new Error(`${name}: the render uses a database URL file but ANCHORD_RENDERED_DATABASE_URL is not set`);
      }
      fs.writeFileSync(path.join(database, m[1]), `${process.env.ANCHORD_RENDERED_DATABASE_URL}\n`, { mode: 0o600 });
    }
  }
  const portFile = path.join(dir, "port");
  args.push(`--port-file=${portFile}`);
  const shown = [...Object.entries(env).filter(([k]) => k !== "PATH").map(([k, v]) => `${k}=${v}`), binary[component], ...args];
  const child = spawn(binary[component], args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (b) => (out += b));
  child.stderr.on("data", (b) => (out += b));
  let exited = null;
  const done = new Promise((r) => child.on("exit", (code, sig) => { exited = { code, sig }; r(); }));
  const fail = (msg) => { throw new Error(`${name}: ${msg}\n  command: ${shown.join(" ")}\n  output:\n${out.replace(/^/gm, "    ")}`); };
  for (let i = 0; i < 200 && !exited; i++) {
    if (fs.existsSync(portFile) && fs.readFileSync(portFile, "utf8").trim()) break;
    await sleep(100);
  }
  if (exited) fail(`exited (${exited.code ?? exited.sig}) instead of serving`);
  if (!fs.existsSync(portFile)) { child.kill("SIGKILL"); await done; fail("did not serve within 20 s"); }
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15000);
  await done;
  clearTimeout(timer);
  if (exited.code !== 0) fail(`exited ${exited.code ?? exited.sig} after SIGTERM`);
  console.log(`ok ${name}: ${args.length - 1} args, ${Object.keys(env).length - 1} env vars accepted`);
}

(async () => {
  let failures = 0, ran = 0;
  for (const d of docs) {
    if (d.kind !== "Deployment") continue;
    const component = (d.metadata.labels || {})["app.kubernetes.io/component"];
    if (!binary[component]) { console.error(`${d.metadata.name}: unknown component ${component}`); failures++; continue; }
    for (const c of d.spec.template.spec.containers) {
      try { ran++; await runOne(d.metadata.name, component, c); }
      catch (e) { failures++; console.error(`REJECTED ${e.message}`); }
    }
  }
  fs.rmSync(scratch, { recursive: true, force: true });
  if (ran === 0) { console.error("no Deployments in the render"); failures++; }
  process.exit(failures ? 1 : 0);
})();
