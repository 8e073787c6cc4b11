// Offline schema validation of rendered Kubernetes manifests (no API server needed).
//
//   node validate-manifests.cjs TOOLS_DIR FILE.yaml...
//
// Every document is validated against the Kubernetes OpenAPI schema with npm kubernetes-models
// (model class chosen from apiVersion/kind, then validate()). Like kubeconform without -strict, it
// does not reject unknown fields. kubernetes-models does not know CRDs: the prometheus-operator
// kinds (ServiceMonitor, PrometheusRule) are skipped explicitly and listed; any other unknown kind
// is an error. On top of the schema, the anchord security policy is checked for every workload:
// non-root, read-only root filesystem, all capabilities dropped, seccomp RuntimeDefault, no
// privilege escalation, and no secret-looking literal env values.
// Exit status 1 on any failure.
"use strict";
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const [toolsDir, ...files] = process.argv.slice(2);
if (!toolsDir || files.length === 0) {
  console.error("usage: validate-manifests.cjs TOOLS_DIR FILE.yaml...");
  process.exit(2);
}
const req = createRequire(path.join(path.resolve(toolsDir), "node_modules", "noop.js"));
const YAML = req("yaml");

const SKIPPED_CRDS = new Set(["monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"]);
let failures = 0, valid = 0;
const skipped = [];
const fail = (where, msg) => { failures++; console.error(`INVALID ${where}: ${msg}`); };

function checkPodSecurity(where, podSpec) {
  const psc = podSpec.securityContext || {};
  if (psc.runAsNonRoot !== true) fail(where, "pod securityContext.runAsNonRoot must be true");
  if (!psc.seccompProfile || psc.seccompProfile.type !== "RuntimeDefault")
    fail(where, "pod seccompProfile must be RuntimeDefault");
  for (const c of [...(podSpec.initContainers || []), ...(podSpec.containers || [])]) {
    const w = `${where} container ${c.name}`;
    const sc = c.securityContext || {};
    if (sc.readOnlyRootFilesystem !== true) fail(w, "readOnlyRootFilesystem must be true");
    if (sc.allowPrivilegeEscalation !== false) fail(w, "allowPrivilegeEscalation must be false");
    if (!sc.capabilities || !Array.isArray(sc.capabilities.drop) || !sc.capabilities.drop.includes("ALL"))
      fail(w, "capabilities.drop must include ALL");
    if (sc.privileged) fail(w, "must not be privileged");
    for (const e of c.env || []) {
      if (/KEY|TOKEN|SECRET|PASSWORD/i.test(e.name) && !/_FILE$/.test(e.name) && e.value !== undefined)
        fail(w, `env ${e.name} carries a literal secret-looking value; mount it as a file`);
    }
  }
}

for (const file of files) {
  let docs;
  try {
    docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  } catch (e) {
    fail(file, `cannot read: ${e.message}`);
    continue;
  }
  docs.forEach((doc, i) => {
    if (doc.errors && doc.errors.length) { fail(`${file}#${i}`, doc.errors[0].message); return; }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) return;  // empty document between ---
    const where = `${file}#${i} ${obj.kind}/${obj.metadata && obj.metadata.name}`;
    if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
      fail(where, "missing apiVersion or kind"); return;
    }
    const id = `${obj.apiVersion}/${obj.kind}`;
    if (SKIPPED_CRDS.has(id)) { skipped.push(where); return; }
    let Model;
    try {
      Model = req(`kubernetes-models/${obj.apiVersion}/${obj.kind}`)[obj.kind];
    } catch (e) {
      fail(where, `unknown apiVersion/kind ${id} (not in kubernetes-models)`); return;
    }
    if (typeof Model !== "function") { fail(where, `no model class for ${id}`); return; }
    try {
      new Model(obj).validate();
    } catch (e) {
      fail(where, (e && e.message ? e.message : String(e)).split("\n").slice(0, 6).join(" | "));
      return;
    }
    if (!obj.metadata || !obj.metadata.name) { fail(where, "metadata.name is empty"); return; }
    const podSpec = obj.kind === "Deployment" || obj.kind === "StatefulSet" || obj.kind === "Job"
      ? obj.spec && obj.spec.template && obj.spec.template.spec : null;
    if (podSpec) checkPodSecurity(where, podSpec);
    valid++;
  });
}
for (const s of skipped) console.log(`SKIPPED (CRD, no schema offline) ${s}`);
console.log(`validate-manifests: ${valid} valid, ${skipped.length} skipped CRD objects, ${failures} invalid`);
process.exit(failures ? 1 : 0);
