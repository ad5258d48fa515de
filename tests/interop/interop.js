'use strict';
// Interoperability check: opampd against @elastic/opamp-client-node, an
// independently written OpAMP client (plain HTTP transport). Publishes two
// configuration versions through the admin API and checks that the client
// receives each one, reports it APPLIED, and that the server records it.
//
// Usage: node interop.js <opamp url> <admin url> <admin token>

const {
    createOpAMPClient,
    AgentCapabilities,
    RemoteConfigStatuses,
} = require('@elastic/opamp-client-node');

const [opampUrl, adminUrl, token] = process.argv.slice(2);
if (!opampUrl || !adminUrl || !token) {
    console.error('usage: node interop.js <opamp url> <admin url> <token>');
    process.exit(2);
}

let passed = 0;
let failed = 0;
function check(ok, what, detail) {
    if (ok) {
        passed++;
        console.log(`ok - ${what}`);
    } else {
        failed++;
        console.log(`not ok - ${what}${detail ? ` (${detail})` : ''}`);
    }
    return ok;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const hex = (u8) => Buffer.from(u8).toString('hex');

// Poll fn until it returns a truthy value or timeoutMs passes; returns the last value.
async function waitFor(fn, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let v;
    for (;;) {
        v = await fn();
        if (v || Date.now() > deadline) return v;
        await sleep(100);
    }
}

async function api(method, path, body) {
    const res = await fetch(adminUrl + path, {
        method,
        headers: {
            Authorization: `Bearer ${token}`,
            ...(body ? {'Content-Type': 'application/json'} : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(10000),
    });
    let json = null;
    try {
        json = await res.json();
    } catch {
        // not JSON: leave null
    }
    return {status: res.status, json};
}

// Every remote config the client was handed, in order: {hash, files}.
const received = [];

// Warnings and errors of the client go to stderr for diagnosis.
const log = {
    trace() {},
    debug() {},
    info() {},
    warn: (...a) => console.error('client warn:', ...a),
    error: (...a) => console.error('client error:', ...a),
    fatal: (...a) => console.error('client fatal:', ...a),
    child() {
        return log;
    },
};

const client = createOpAMPClient({
    endpoint: opampUrl,
    log,
    capabilities:
        AgentCapabilities.AgentCapabilities_AcceptsRemoteConfig |
        AgentCapabilities.AgentCapabilities_ReportsRemoteConfig,
    heartbeatIntervalSeconds: 1,
    onMessage: ({remoteConfig}) => {
        if (!remoteConfig) return;
        const files = {};
        for (const [name, f] of Object.entries(remoteConfig.config?.configMap ?? {})) {
            files[name] = Buffer.from(f.body).toString('utf8');
        }
        received.push({hash: hex(remoteConfig.configHash), files});
        client.setRemoteConfigStatus({
            lastRemoteConfigHash: remoteConfig.configHash,
            status: RemoteConfigStatuses.RemoteConfigStatuses_APPLIED,
        });
    },
});

async function publish(body) {
    const res = await api('POST', '/api/v1/configs/interop', {
        files: {elastic: {content_type: 'application/json', body}},
        message: 'interop test',
    });
    check(
        res.status === 201 && /^[0-9a-f]{64}$/.test(res.json?.config_hash ?? ''),
        `publish version with body ${body}`,
        `HTTP ${res.status} ${JSON.stringify(res.json)}`
    );
    return res.json?.config_hash;
}

async function deliverAndApply(uid, hash, body) {
    const got = await waitFor(() => received.find((r) => r.hash === hash), 30000);
    check(!!got, `client received config ${hash.slice(0, 12)}`, `got ${JSON.stringify(received)}`);
    check(got?.files?.elastic === body, 'config body arrived intact', JSON.stringify(got?.files));
    let last = null;
    const applied = await waitFor(async () => {
        const r = await api('GET', `/api/v1/agents/${uid}`);
        last = r.json;
        const rcs = r.json?.remote_config_status;
        return r.status === 200 && rcs?.status === 'APPLIED' && rcs?.config_hash === hash;
    }, 30000);
    check(applied, `server shows APPLIED with hash ${hash.slice(0, 12)}`,
        JSON.stringify(last?.remote_config_status));
}

async function main() {
    client.setAgentDescription({
        identifyingAttributes: {'service.name': 'interop-node'},
        nonIdentifyingAttributes: {'os.type': 'linux'},
    });
    client.start();
    const uid = hex(client.getInstanceUid());

    let agent = null;
    const seen = await waitFor(async () => {
        const r = await api('GET', `/api/v1/agents/${uid}`);
        agent = r.json;
        return r.status === 200 && r.json?.connected === true;
    }, 15000);
    check(seen, 'agent is registered and connected', JSON.stringify(agent));
    check(agent?.transport === 'http', 'transport is http', agent?.transport);
    check(agent?.identifying_attributes?.['service.name'] === 'interop-node',
        'description reached the server', JSON.stringify(agent?.identifying_attributes));

    const body1 = '{"logging_level":"debug"}';
    const hash1 = await publish(body1);
    if (hash1) await deliverAndApply(uid, hash1, body1);

    const body2 = '{"logging_level":"info"}';
    const hash2 = await publish(body2);
    check(hash2 && hash2 !== hash1, 'second version has a new hash');
    if (hash2) await deliverAndApply(uid, hash2, body2);

    // Once APPLIED, the server must not hand the same config out again.
    await sleep(3000);
    const counts = received.reduce((m, r) => ((m[r.hash] = (m[r.hash] || 0) + 1), m), {});
    check(Object.values(counts).every((n) => n === 1) && received.length === 2,
        'each version delivered exactly once', JSON.stringify(counts));

    await client.shutdown();
}

const watchdog = setTimeout(() => {
    check(false, 'finished within 150 s');
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(1);
}, 150000);

main()
    .catch((err) => check(false, 'no exception', err && err.stack))
    .finally(() => {
        clearTimeout(watchdog);
        console.log(`${passed} passed, ${failed} failed`);
        process.exit(failed === 0 ? 0 : 1);
    });
