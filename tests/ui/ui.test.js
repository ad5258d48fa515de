'use strict';
// Browser test of the opampd web UI. Starts a real opampd, connects OpAMP agents
// (tests/ui/agents.js: HTTP and WebSocket, healthy, degraded, failing, slow,
// disconnected), publishes configurations through the admin API, then drives
// Debian's chromium with playwright-core: signs in, loads every page, checks what
// each shows against the API, publishes and rolls back versions through the UI,
// and saves a screenshot of each page. Then a three-node cluster loses its majority
// and the surviving node's UI must say that it is read-only.
//
// Environment: OPAMPD_BIN (required), OPD_UI_SHOTS (screenshot directory),
// CHROMIUM (default /usr/bin/chromium). The last line is "N passed, M failed".

const fs = require('fs');
const os = require('os');
const path = require('path');
const net = require('net');
const {spawn, execFileSync} = require('child_process');
const {chromium} = require('playwright-core');
const {Agent} = require('./agents');

const BIN = process.env.OPAMPD_BIN;
const SHOTS = process.env.OPD_UI_SHOTS || path.resolve('ui-screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 15000;

let passed = 0;
let failed = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function check(name, fn) {
	try {
		await fn();
		passed++;
		console.log(`ok - ${name}`);
	} catch (e) {
		failed++;
		console.log(`not ok - ${name}: ${(e && e.stack) || e}`);
	}
}

function assert(cond, msg) {
	if (!cond) throw new Error(msg || 'assertion failed');
}

function eq(actual, expected, what) {
	const a = JSON.stringify(actual);
	const b = JSON.stringify(expected);
	if (a !== b) throw new Error(`${what}: got ${a}, want ${b}`);
}

// A CSR (PEM) for CN = cn with a new EC P-256 key (the key is thrown away: the test only
// needs the certificate issued and listed).
function makeCsr(cn) {
	return execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
		'-nodes', '-keyout', '/dev/null', '-subj', `/CN=${cn}`, '-outform', 'PEM'],
	{stdio: ['ignore', 'pipe', 'ignore'], timeout: 10000}).toString();
}

// Poll fn until it returns a truthy value (then return it) or the time is up (then throw).
async function waitFor(fn, what, ms = TIMEOUT) {
	const deadline = Date.now() + ms;
	let last;
	for (;;) {
		try {
			last = await fn();
			if (last) return last;
		} catch (e) {
			last = e;
		}
		if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
		await sleep(100);
	}
}

// ---- daemons ----

function freePorts(n) {
	return Promise.all([...Array(n)].map(() => new Promise((resolve, reject) => {
		const s = net.createServer();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => {
			const p = s.address().port;
			s.close(() => resolve(p));
		});
	})));
}

const daemons = [];

async function startNode(dir, args) {
	fs.mkdirSync(dir, {recursive: true});
	const ready = path.join(dir, 'ready.json');
	fs.rmSync(ready, {force: true});
	const log = fs.openSync(path.join(dir, 'opampd.log'), 'a');
	const child = spawn(BIN, ['serve', '--data-dir', dir, '--opamp-listen', '127.0.0.1:0',
		'--heartbeat-interval', '1', '--ready-file', ready, ...args],
	{stdio: ['ignore', 'ignore', log]});
	fs.closeSync(log);
	const d = {dir, child, exited: false};
	child.on('exit', (code, signal) => {
		d.exited = true;
		d.status = signal ? signal : code;
	});
	daemons.push(d);
	await waitFor(() => {
		if (d.exited) throw new Error(`opampd exited; log:\n${fs.readFileSync(path.join(dir, 'opampd.log'), 'utf8')}`);
		return fs.existsSync(ready) && fs.existsSync(path.join(dir, 'admin.token'));
	}, `opampd ready in ${dir}`);
	const r = JSON.parse(fs.readFileSync(ready, 'utf8'));
	d.admin = `http://127.0.0.1:${r.admin_port}`;
	d.opamp = `http://127.0.0.1:${r.opamp_port}/v1/opamp`;
	d.token = fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
	return d;
}

async function stopNode(d) {
	if (d.exited) return;
	d.child.kill('SIGTERM');
	const deadline = Date.now() + 5000;
	while (!d.exited && Date.now() < deadline) await sleep(50);
	if (!d.exited) d.child.kill('SIGKILL');
}

function apiFor(d) {
	return async (method, p, body) => {
		const res = await fetch(d.admin + p, {
			method,
			headers: {Authorization: `Bearer ${d.token}`, ...(body ? {'Content-Type': 'application/json'} : {})},
			body: body ? JSON.stringify(body) : undefined,
			signal: AbortSignal.timeout(10000),
		});
		const json = await res.json().catch(() => null);
		return {status: res.status, json, headers: res.headers};
	};
}

// ---- the browser side ----

async function gotoHash(page, hash) {
	await page.evaluate((h) => {
		location.hash = h;
	}, hash);
	await waitLoaded(page, hash);
}

// The page for `hash` is mounted and its first refresh has finished.
async function waitLoaded(page, hash) {
	await page.waitForFunction((h) => {
		const m = document.getElementById('main');
		return m && m.dataset.route === h && m.dataset.loaded;
	}, hash, {timeout: TIMEOUT});
}

// Reload the current route's data at once instead of waiting for the 5 s refresh.
async function reload(page) {
	const hash = await page.evaluate(() => location.hash || '#/');
	await page.reload();
	await waitLoaded(page, hash);
}

const text = (page, sel) => page.locator(sel).first().innerText();
// Full-page screenshots from the top (the top bar is sticky).
async function shot(page, name) {
	await page.evaluate(() => window.scrollTo(0, 0));
	await page.screenshot({path: path.join(SHOTS, name), fullPage: true});
}

// The state of an agent's configuration, computed from the API as the UI should.
function configState(a) {
	const want = a.desired_config;
	if (!want) return 'none';
	if (!(a.capabilities & 2)) return 'unsupported';
	const rcs = a.remote_config_status;
	if (rcs.config_hash === want.config_hash) {
		if (rcs.status === 'APPLIED') return 'applied';
		if (rcs.status === 'APPLYING') return 'applying';
		if (rcs.status === 'FAILED') return 'failed';
	}
	return 'pending';
}

// The UI's rollout line for a configuration, computed from the API.
async function rolloutLine(api, name) {
	const c = (await api('GET', `/api/v1/configs/${name}`)).json;
	const list = (await api('GET', '/api/v1/agents')).json.agents;
	const t = list.filter((a) => a.desired_config && a.desired_config.name === name);
	const applied = t.filter((a) => a.remote_config_status.config_hash === c.config_hash &&
		a.remote_config_status.status === 'APPLIED').length;
	return `v${c.active_version}: ${applied} of ${t.length} agent${t.length === 1 ? '' : 's'} applied.`;
}

function componentNames(ch, out = ['agent']) {
	for (const [name, sub] of Object.entries((ch && ch.components) || {})) {
		out.push(name);
		componentNames(sub, out);
	}
	return out;
}

const yaml = (batch, extra = '') => `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
processors:
  batch:
    send_batch_size: ${batch}
    timeout: 5s
exporters:
  otlphttp:
    endpoint: https://telemetry.example.internal:4318
${extra}service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlphttp]
`;

async function main() {
	assert(BIN, 'OPAMPD_BIN must point at the opampd binary');
	fs.mkdirSync(SHOTS, {recursive: true});
	const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'opd-ui-'));
	const agents = [];
	let browser = null;
	try {
		await run(tmp, agents, (b) => {
			browser = b;
		});
	} finally {
		agents.forEach((a) => a.stop());
		if (browser) await browser.close().catch(() => {});
		for (const d of daemons) await stopNode(d);
		// Under ASan/UBSan a report makes the exit status non-zero, or shows in the log.
		await check('every opampd exits cleanly on SIGTERM, without sanitizer reports', async () => {
			for (const d of daemons) {
				const log = fs.readFileSync(path.join(d.dir, 'opampd.log'), 'utf8');
				assert(d.status === 0, `${d.dir}: exit status ${d.status}`);
				assert(!/AddressSanitizer|LeakSanitizer|runtime error:/.test(log), `${d.dir}: sanitizer report in the log`);
			}
		});
		if (failed) {
			for (const d of daemons) {
				const log = path.join(d.dir, 'opampd.log');
				if (!fs.existsSync(log)) continue;
				const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
				console.error(`---- ${log} (last 40 lines) ----\n${lines.slice(-40).join('\n')}`);
			}
		}
		fs.rmSync(tmp, {recursive: true, force: true});
	}
}

async function run(tmp, agents, setBrowser) {
	const [raftPort] = await freePorts(1);
	const node = await startNode(path.join(tmp, 'single'), ['--admin-listen', '127.0.0.1:0',
		'--raft-listen', `127.0.0.1:${raftPort}`]);
	const api = apiFor(node);

	// ---- the fleet ----
	const comp = (healthy, status, lastError, components) => ({healthy, status, lastError,
		startNs: BigInt(Date.now() - 3600e3) * 1000000n, components});
	const pipelines = (exporterOk) => comp(exporterOk, exporterOk ? 'StatusOK' : 'StatusRecoverableError',
		exporterOk ? '' : '', {
			'pipeline:traces': comp(exporterOk, exporterOk ? 'StatusOK' : 'StatusRecoverableError', '', {
				'receiver:otlp': comp(true, 'StatusOK', ''),
				'processor:batch': comp(true, 'StatusOK', ''),
				'exporter:otlphttp': exporterOk ? comp(true, 'StatusOK', '')
					: comp(false, 'StatusRecoverableError', 'Post "https://telemetry.example.internal:4318/v1/traces": context deadline exceeded'),
			}),
			'pipeline:metrics': comp(true, 'StatusOK', '', {
				'receiver:otlp': comp(true, 'StatusOK', ''),
				'exporter:otlphttp': comp(true, 'StatusOK', ''),
			}),
		});
	const spec = [
		['checkout', 'checkout-7f9c-1', 'websocket', 'apply', true, 'ip-10-0-1-11'],
		['checkout', 'checkout-7f9c-2', 'websocket', 'apply', true, 'ip-10-0-1-12'],
		['checkout', 'checkout-7f9c-3', 'http', 'apply', true, 'ip-10-0-2-31'],
		['checkout', 'checkout-7f9c-4', 'http', 'fail', true, 'ip-10-0-2-32'],
		['payments', 'payments-5d2a-1', 'websocket', 'apply', false, 'ip-10-0-3-40'],
		['payments', 'payments-5d2a-2', 'http', 'slow', true, 'ip-10-0-3-41'],
		['frontend', 'frontend-b81e-1', 'websocket', 'apply', true, 'ip-10-0-4-50'],
		['frontend', 'frontend-b81e-2', 'http', 'apply', true, 'ip-10-0-4-51'],
		['batch-jobs', 'batch-jobs-0', 'http', 'apply', true, 'ip-10-0-5-60'],
		['canary-probe', 'canary-probe-0', 'websocket', 'apply', true, 'ip-10-0-6-70'],
		['checkout', 'checkout-7f9c-5', 'websocket', 'apply', true, 'ip-10-0-1-13'],
	];
	for (const [svc, inst, transport, behaviour, exporterOk, host] of spec) {
		agents.push(new Agent({
			url: node.opamp, transport, behaviour,
			ident: {'service.name': svc, 'service.instance.id': inst},
			nonident: {'host.name': host, 'os.type': 'linux', 'service.version': '1.42.0',
				'deployment.environment': 'production',
				...(svc === 'canary-probe' ? {'note': '<img src=x onerror="window.__xss=1">'} : {})},
			health: pipelines(exporterOk),
			failMessage: 'exporters::otlphttp: cannot load TLS client certificate "/etc/otelcol/client.pem": no such file or directory',
		}));
	}
	const byInst = (inst) => agents.find((a) => a.ident['service.instance.id'] === inst);
	await Promise.all(agents.map((a) => a.start()));

	const publish = async (name, body, message, selector, priority = 0) => {
		const r = await api('POST', `/api/v1/configs/${name}`, {
			selector, priority, message,
			files: {'collector.yaml': {content_type: 'text/yaml', body}},
		});
		assert(r.status === 201, `publish ${name}: HTTP ${r.status} ${JSON.stringify(r.json)}`);
		return r.json;
	};

	await check('fleet: agents connect and configurations reach them', async () => {
		await waitFor(async () => (await api('GET', '/api/v1/agents')).json.agents.filter((a) => a.connected).length === agents.length,
			'every agent connected');
		await publish('checkout', yaml(512), 'first checkout pipeline', {'service.name': 'checkout'}, 10);
		await publish('checkout', yaml(1024, '  debug:\n    verbosity: basic\n'), 'raise batch size, add debug exporter',
			{'service.name': 'checkout'}, 10);
		await publish('payments', yaml(256), 'payments pipeline', {'service.name': 'payments'}, 10);
		await publish('frontend', yaml(2048), 'frontend pipeline', {'service.name': 'frontend'}, 5);
		await waitFor(async () => {
			const list = (await api('GET', '/api/v1/agents')).json.agents;
			const st = Object.fromEntries(list.map((a) => [a.identifying_attributes['service.instance.id'], configState(a)]));
			return st['checkout-7f9c-1'] === 'applied' && st['checkout-7f9c-3'] === 'applied' &&
				st['checkout-7f9c-4'] === 'failed' && st['payments-5d2a-2'] === 'applying' &&
				st['frontend-b81e-2'] === 'applied' && st['checkout-7f9c-5'] === 'applied';
		}, 'rollouts settle');
		// One agent leaves: it must show as down and disconnected.
		await byInst('checkout-7f9c-5').disconnect();
		await waitFor(async () => {
			const a = (await api('GET', `/api/v1/agents/${byInst('checkout-7f9c-5').uidHex}`)).json;
			return a && !a.connected && a.health.state === 'down';
		}, 'disconnected agent is down');
		// And phi must have settled for the others (nobody suspect).
		await waitFor(async () => (await api('GET', '/api/v1/agents')).json.agents
			.filter((a) => a.health.state === 'suspect').length === 0, 'no suspect agents');
	});

	// ---- the UI's own files ----
	await check('static files: served without a token, with a strict content security policy', async () => {
		const r = await fetch(node.admin + '/');
		eq(r.status, 200, 'GET /');
		assert(r.headers.get('content-type').startsWith('text/html'), 'html content type');
		assert(/script-src 'self'/.test(r.headers.get('content-security-policy') || ''), 'CSP header');
		const js = await fetch(node.admin + '/ui/app.js');
		eq(js.status, 200, 'GET /ui/app.js');
		assert(js.headers.get('content-type').startsWith('text/javascript'), 'js content type');
		eq(await js.text(), fs.readFileSync(path.join(process.env.OPD_UI_SOURCE || path.join(__dirname, '../../opampd/ui'), 'app.js'), 'utf8'), 'embedded app.js');
		eq((await fetch(node.admin + '/ui/missing.js')).status, 404, 'unknown file');
		eq((await fetch(node.admin + '/', {method: 'POST'})).status, 405, 'POST /');
		eq((await fetch(node.admin + '/api/v1/agents')).status, 401, 'API still needs the token');
	});

	const b = await chromium.launch({executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu',
		'--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync']});
	setBrowser(b);
	const context = await b.newContext({viewport: {width: 1440, height: 900}, colorScheme: 'light'});
	const page = await context.newPage();
	const pageErrors = [];
	page.on('pageerror', (e) => pageErrors.push(String(e)));
	page.on('console', (m) => {
		if (m.type() === 'error') pageErrors.push(m.text());
	});
	const requests = [];
	page.on('request', (r) => requests.push(r.url()));

	await check('sign-in: a wrong token is refused, the right one opens the overview', async () => {
		await page.goto(node.admin + '/', {waitUntil: 'domcontentloaded'});
		await page.locator('form.signin input[name=token]').waitFor({timeout: TIMEOUT});
		await shot(page, '01-sign-in.png');
		await page.fill('input[name=token]', 'not-the-token-0123456789');
		await page.click('form.signin button[type=submit]');
		await page.getByText('That token was refused.').waitFor({timeout: TIMEOUT});
		eq(await page.evaluate(() => sessionStorage.length), 0, 'nothing stored for a refused token');
		await page.fill('input[name=token]', node.token);
		await page.click('form.signin button[type=submit]');
		await waitLoaded(page, '#/');
		eq(await page.evaluate(() => Object.values(sessionStorage)), [node.token], 'token kept in sessionStorage');
	});

	// Rendered from the API fetched just before; states have settled, so they agree.
	await check('overview: agents by health and transport, configurations with their targets, cluster', async () => {
		await reload(page);
		const list = (await api('GET', '/api/v1/agents')).json.agents;
		const configs = (await api('GET', '/api/v1/configs')).json.configs;
		const cluster = (await api('GET', '/api/v1/cluster')).json;
		eq(await text(page, '[data-k=agents-total]'), String(list.length), 'agent total');
		for (const s of ['healthy', 'degraded', 'suspect', 'down']) {
			eq(await text(page, `[data-tile=agents] [data-count=${s}]`),
				String(list.filter((a) => a.health.state === s).length), `${s} count`);
		}
		const tr = (a) => (a.connected ? a.transport : 'none');
		for (const t of ['websocket', 'http', 'none']) {
			eq(await text(page, `[data-tile=transport] [data-count=${t}]`), String(list.filter((a) => tr(a) === t).length), `${t} count`);
		}
		eq(await page.locator('[data-tile=agents] [data-count=degraded]').innerText(), '1', 'one degraded agent (payments-5d2a-1)');
		eq(await text(page, '[data-tile=config] [data-count=failed]'), '1', 'one failed rollout');
		eq(await page.locator('tr[data-config]').count(), configs.length, 'configuration rows');
		for (const c of configs) {
			eq(await text(page, `tr[data-config="${c.name}"] [data-k=targets]`),
				String(list.filter((a) => a.desired_config && a.desired_config.name === c.name).length), `${c.name} targets`);
		}
		eq(await text(page, '[data-k=cluster-state]'), 'writable', 'cluster state');
		assert((await text(page, '[data-k=cluster-leader]')).includes(`node ${cluster.leader.id}`), 'leader');
		assert(await page.locator('#banner').isHidden(), 'no read-only banner on a writable node');
		const attention = await text(page, 'section.card:has(h2:text("Needs attention"))');
		assert(attention.includes('cannot load TLS client certificate'), 'failed agent message in "Needs attention"');
		assert(attention.includes('context deadline exceeded'), 'degraded component error in "Needs attention"');
		await shot(page, '02-overview.png');
	});

	await check('agents: table, filters and search agree with the API', async () => {
		await gotoHash(page, '#/agents');
		const list = (await api('GET', '/api/v1/agents')).json.agents;
		const rows = async () => (await page.locator('tbody tr[data-uid]').evaluateAll((trs) => trs.map((t) => t.dataset.uid))).sort();
		eq(await rows(), list.map((a) => a.instance_uid).sort(), 'all agents listed');
		await shot(page, '03-agents.png');
		// Health filter against the API's own health filter.
		await page.selectOption('select[name=health]', 'down');
		const down = (await api('GET', '/api/v1/agents?health=down')).json.agents;
		eq(await rows(), down.map((a) => a.instance_uid).sort(), 'health=down');
		eq(await page.evaluate(() => location.hash), '#/agents?health=down', 'filter kept in the address');
		await page.selectOption('select[name=health]', '');
		// key=value search against the API's attribute filter.
		await page.fill('input[name=q]', 'service.name=payments');
		const pay = (await api('GET', '/api/v1/agents?attr.service.name=payments')).json.agents;
		eq(await rows(), pay.map((a) => a.instance_uid).sort(), 'service.name=payments');
		eq(pay.length, 2, 'two payments agents');
		await page.fill('input[name=q]', 'ip-10-0-4');
		eq((await rows()).length, 2, 'substring search over attributes');
		await page.fill('input[name=q]', '');
		await page.selectOption('select[name=config]', 'failed');
		eq(await rows(), list.filter((a) => configState(a) === 'failed').map((a) => a.instance_uid).sort(), 'config=failed');
		await page.selectOption('select[name=config]', '');
		await page.selectOption('select[name=transport]', 'websocket');
		eq(await rows(), list.filter((a) => a.connected && a.transport === 'websocket').map((a) => a.instance_uid).sort(),
			'transport=websocket');
		await page.click('button:text("Clear")');
		eq((await rows()).length, list.length, 'cleared');
	});

	await check('agent page: description, component health tree, desired vs reported hash', async () => {
		const uid = byInst('payments-5d2a-1').uidHex;
		await gotoHash(page, '#/agents');
		await page.click(`tr[data-uid="${uid}"] a.agent-name`);
		await waitLoaded(page, `#/agents/${uid}`);
		const a = (await api('GET', `/api/v1/agents/${uid}`)).json;
		eq(await page.locator('.page-head h1').innerText(), 'payments', 'name');
		eq(await page.locator('.page-head [data-health]').getAttribute('data-health'), a.health.state, 'health state');
		eq(a.health.state, 'degraded', 'the API says degraded');
		eq(await page.locator('[data-k=desired-hash] code').getAttribute('title'), a.desired_config.config_hash, 'desired hash');
		eq(await page.locator('[data-k=reported-hash] code').getAttribute('title'), a.remote_config_status.config_hash, 'reported hash');
		eq(await page.locator('[data-k=effective-hash] code').getAttribute('title'), a.effective_config_hash, 'effective hash');
		const names = await page.locator('[data-component]').evaluateAll((els) => els.map((e) => e.dataset.component));
		eq(names.sort(), componentNames(a.health.component_health).sort(), 'component tree');
		assert((await text(page, '[data-k=health-tree]')).includes('context deadline exceeded'), 'component error shown');
		assert((await text(page, 'section.card:has(h2:text("Description"))')).includes('ip-10-0-3-40'), 'attributes shown');
		assert((await text(page, '[data-k=sync]')).includes('applied'), 'in sync');
		await shot(page, '04-agent-degraded.png');
		// A failing agent shows its message.
		const f = byInst('checkout-7f9c-4').uidHex;
		await gotoHash(page, `#/agents/${f}`);
		assert((await text(page, '[data-k=sync]')).includes('cannot load TLS client certificate'), 'failure message');
		await shot(page, '05-agent-failed.png');
	});

	await check('agent values are shown as text, never as markup', async () => {
		const uid = byInst('canary-probe-0').uidHex;
		await gotoHash(page, `#/agents/${uid}`);
		assert((await text(page, 'main')).includes('<img src=x onerror="window.__xss=1">'), 'payload shown as text');
		eq(await page.locator('main img').count(), 0, 'no element injected');
		eq(await page.evaluate(() => window.__xss), undefined, 'no script ran');
	});

	await check('configurations: list with versions, targets and rollout', async () => {
		await gotoHash(page, '#/configs');
		const configs = (await api('GET', '/api/v1/configs')).json.configs;
		const list = (await api('GET', '/api/v1/agents')).json.agents;
		eq(await page.locator('tr[data-config]').evaluateAll((t) => t.map((x) => x.dataset.config)), configs.map((c) => c.name), 'names in order');
		for (const c of configs) {
			const row = page.locator(`tr[data-config="${c.name}"]`);
			assert((await row.innerText()).includes(`v${c.active_version}`), `${c.name} active version`);
			eq(await row.locator('[data-k=targets]').innerText(),
				String(list.filter((a) => a.desired_config && a.desired_config.name === c.name).length), `${c.name} targets`);
		}
		await shot(page, '06-configs.png');
	});

	let checkout = null;
	await check('configuration page: versions with author, message, signature; rollout with failures', async () => {
		await page.click('tr[data-config="checkout"] a');
		await waitLoaded(page, '#/configs/checkout');
		checkout = (await api('GET', '/api/v1/configs/checkout')).json;
		const list = (await api('GET', '/api/v1/agents')).json.agents;
		eq(await page.locator('tr[data-version]').count(), checkout.versions.length, 'version rows');
		for (const v of checkout.versions) {
			const d = (await api('GET', `/api/v1/configs/checkout/versions/${v.version}`)).json;
			const row = page.locator(`tr[data-version="${v.version}"]`);
			const t = await row.innerText();
			assert(t.includes(v.message) && t.includes(v.actor), `v${v.version} message and author`);
			eq((await row.locator('[data-k=signature]').innerText()).trim(), d.verified ? 'verified' : 'does not verify', `v${v.version} signature`);
			eq(d.verified, true, `v${v.version} verifies`);
		}
		const targeted = list.filter((a) => a.desired_config && a.desired_config.name === 'checkout');
		for (const s of ['applied', 'applying', 'failed', 'pending']) {
			const want = targeted.filter((a) => {
				const rcs = a.remote_config_status;
				const st = rcs.config_hash === checkout.config_hash
					? {APPLIED: 'applied', APPLYING: 'applying', FAILED: 'failed'}[rcs.status] || 'pending' : 'pending';
				return st === s;
			}).length;
			eq(await text(page, `[data-count=${s}]`), String(want), `rollout ${s}`);
		}
		const failures = await text(page, '[data-k=failures]');
		assert(failures.includes('cannot load TLS client certificate'), 'failed agent message');
		assert(await page.locator(`[data-k=failures] [data-uid="${byInst('checkout-7f9c-4').uidHex}"]`).count() === 1, 'failed agent listed');
		await shot(page, '07-config.png');
	});

	await check('diff between two versions', async () => {
		await page.selectOption('select[name=diff-from]', '1');
		await page.selectOption('select[name=diff-to]', '2');
		const diff = page.locator('[data-k=diff]');
		await diff.waitFor({timeout: TIMEOUT});
		const del = await diff.locator('tr.del').allInnerTexts();
		const add = await diff.locator('tr.add').allInnerTexts();
		assert(del.some((l) => l.includes('send_batch_size: 512')), `removed line: ${del}`);
		assert(add.some((l) => l.includes('send_batch_size: 1024')), `added line: ${add}`);
		assert(add.some((l) => l.includes('verbosity: basic')), 'added debug exporter');
		eq(del.length, 1, 'one line removed');
		eq(add.length, 3, 'three lines added');
		// The same version on both sides.
		await page.selectOption('select[name=diff-from]', '2');
		await page.locator('[data-k=diff-same]').waitFor({timeout: TIMEOUT});
		await page.selectOption('select[name=diff-from]', '1');
		await diff.locator('tr.add').first().waitFor({timeout: TIMEOUT});
	});

	await check('publish a new version through the UI', async () => {
		const before = (await api('GET', '/api/v1/configs/checkout')).json;
		const body = yaml(4096, '  debug:\n    verbosity: basic\n');
		await page.fill('form.publish [name=message]', 'ui: batch 4096');
		await page.fill('form.publish [name=file-body]', body);
		await page.click('form.publish button[type=submit]');
		await page.locator('[data-k=publish-ok]').waitFor({timeout: TIMEOUT});
		const after = (await api('GET', '/api/v1/configs/checkout')).json;
		eq(after.latest_version, before.latest_version + 1, 'a new version');
		eq(after.active_version, after.latest_version, 'and it is active');
		eq(after.versions[0].message, 'ui: batch 4096', 'message');
		eq(after.versions[0].actor, 'admin', 'author');
		const v = (await api('GET', `/api/v1/configs/checkout/versions/${after.active_version}`)).json;
		eq(v.files['collector.yaml'].body, body, 'body stored as typed');
		eq(v.selector, {'service.name': 'checkout'}, 'selector kept');
		eq(v.priority, 10, 'priority kept');
		await waitLoaded(page, '#/configs/checkout');
		await page.locator(`[data-k=active-version]:text("active v${after.active_version}")`).waitFor({timeout: TIMEOUT});
		// The agents get it; the page shows the rollout moving (refreshes every 5 s).
		await waitFor(async () => {
			const want = await rolloutLine(api, 'checkout');
			return want.includes(': 3 of') && (await text(page, '[data-k=rollout-summary]')) === want;
		}, 'UI rollout: the three healthy checkout agents applied it', 20000);
		checkout = after;
		await shot(page, '08-published.png');
	});

	await check('a refused publish shows the error with file and line, and stores nothing', async () => {
		const before = (await api('GET', '/api/v1/configs/checkout')).json;
		await page.fill('form.publish [name=message]', 'broken');
		await page.fill('form.publish [name=file-body]', 'receivers:\n  otlp: [grpc\nexporters: {}\n');
		await page.click('form.publish button[type=submit]');
		const err = page.locator('form.publish .alert-error');
		await err.waitFor({timeout: TIMEOUT});
		const t = await err.innerText();
		assert(t.includes('collector.yaml') && t.includes('invalid_config'), `error text: ${t}`);
		eq(await page.locator('form.publish .file-edit.has-error').count(), 1, 'file marked');
		const after = (await api('GET', '/api/v1/configs/checkout')).json;
		eq(after.latest_version, before.latest_version, 'nothing stored');
		await shot(page, '09-publish-refused.png');
	});

	await check('roll back through the UI', async () => {
		await reload(page); // a fresh form
		await page.click('button[data-rollback="1"]');
		await page.click('[data-k=confirm-rollback]');
		await page.locator('[data-k=rollback-ok]').waitFor({timeout: TIMEOUT});
		const after = (await api('GET', '/api/v1/configs/checkout')).json;
		eq(after.active_version, 1, 'v1 active again');
		eq(after.config_hash, after.versions.find((v) => v.version === 1).config_hash, 'active hash is v1');
		await page.locator('[data-k=active-version]:text("active v1")').waitFor({timeout: TIMEOUT});
		const audit = (await api('GET', '/api/v1/audit?limit=1')).json.entries[0];
		eq([audit.action, audit.name, audit.version], ['rollback', 'checkout', 1], 'audited as a rollback');
		await waitFor(async () => {
			const a = (await api('GET', `/api/v1/agents/${byInst('checkout-7f9c-1').uidHex}`)).json;
			return a.remote_config_status.config_hash === after.config_hash && a.remote_config_status.status === 'APPLIED';
		}, 'agents back on v1');
		await waitFor(async () => {
			const want = await rolloutLine(api, 'checkout');
			return want.startsWith('v1: 3 of') && (await text(page, '[data-k=rollout-summary]')) === want;
		}, 'UI rollout after rollback', 20000);
		await shot(page, '10-rolled-back.png');
	});

	await check('a new configuration through the UI reaches its agent', async () => {
		await gotoHash(page, '#/configs');
		await page.click('a:text("New configuration")');
		await waitLoaded(page, '#/configs/new');
		await page.fill('form.publish [name=config-name]', 'batch-jobs');
		await page.fill('form.publish [name=selector]', 'service.name=batch-jobs');
		await page.fill('form.publish [name=message]', 'nightly batch pipeline');
		await page.fill('form.publish [name=file-body]', yaml(8192));
		await shot(page, '11-new-config.png');
		await page.click('form.publish button[type=submit]');
		await waitLoaded(page, '#/configs/batch-jobs');
		const c = (await api('GET', '/api/v1/configs/batch-jobs')).json;
		eq([c.active_version, c.selector, c.versions[0].message], [1, {'service.name': 'batch-jobs'}, 'nightly batch pipeline'], 'stored');
		await waitFor(async () => {
			const a = (await api('GET', `/api/v1/agents/${byInst('batch-jobs-0').uidHex}`)).json;
			return a.remote_config_status.config_hash === c.config_hash && a.remote_config_status.status === 'APPLIED';
		}, 'batch agent applied it');
	});

	await check('cluster page: node, role, leader, term, indexes, members', async () => {
		await gotoHash(page, '#/cluster');
		const c = (await api('GET', '/api/v1/cluster')).json;
		eq(await text(page, '[data-k=node-id]'), String(c.node_id), 'node id');
		eq(await text(page, '[data-k=role]'), c.role, 'role');
		eq(await text(page, '[data-k=term]'), String(c.term), 'term');
		eq(await text(page, '[data-k=leader-id]'), String(c.leader.id), 'leader');
		const commit = Number(await text(page, '[data-k=commit-index]'));
		assert(commit > 0 && commit <= c.commit_index, `commit index ${commit} vs ${c.commit_index}`);
		eq(await page.locator('tr[data-member]').count(), c.members.length, 'members');
		assert((await text(page, '[data-k=cluster-banner]')).includes('Writable'), 'writable');
		// The store digest is computed when asked for (it dumps the store), then stays shown.
		await page.locator('[data-k=digest] button').click();
		const d = (await api('GET', '/api/v1/cluster/digest')).json;
		await waitFor(async () => (await text(page, '[data-k=digest]')).includes(` at index `), 'digest shown');
		const shown = await page.locator('[data-k=digest] code.hash').getAttribute('title');
		eq(shown.length, 64, 'digest length');
		if (d.applied_index === Number((await text(page, '[data-k=digest]')).match(/at index (\d+)/)[1]))
			eq(shown, d.store_digest, 'digest at the same index');
		await shot(page, '12-cluster.png');
	});

	await check('certificates page: CA and trust bundle, certificates with filters, revoke, rotation', async () => {
		// Three agents ask for certificates through the CSR flow (again if the first one was
		// answered before the fleet CA was registered).
		const certified = ['checkout-7f9c-1', 'payments-5d2a-1', 'frontend-b81e-1'].map(byInst);
		const certsOf = async (a) => (await api('GET', `/api/v1/certificates?agent=${a.uidHex}`)).json.certificates;
		await waitFor(async () => {
			let all = true;
			for (const a of certified) {
				if ((await certsOf(a)).length) continue;
				all = false;
				if (!a.csrAt || Date.now() - a.csrAt > 3000) {
					a.csrAt = Date.now();
					a.requestCert(makeCsr(a.uidHex));
				}
			}
			return all;
		}, 'three agents have certificates');
		const ca = (await api('GET', '/api/v1/ca')).json;
		const bundle = await (await fetch(node.admin + '/api/v1/ca/bundle', {headers: {Authorization: `Bearer ${node.token}`}})).text();
		const all = (await api('GET', '/api/v1/certificates')).json.certificates;
		await gotoHash(page, '#/certs');
		await page.waitForFunction((n) => document.querySelectorAll('tr[data-serial]').length === n, all.length, {timeout: TIMEOUT});
		eq(await page.locator('[data-k=ca-fingerprint] code').getAttribute('title'), ca.active.fingerprint, 'active CA');
		eq(await page.locator('tr[data-ca]').count(), ca.cas.length, 'CAs listed');
		eq(await page.locator('[data-k=bundle]').textContent(), bundle, 'trust bundle');
		eq(await text(page, '[data-k=last-serial]'), String(ca.last_serial), 'last serial');
		const serials = () => page.locator('tr[data-serial]').evaluateAll((t) => t.map((x) => Number(x.dataset.serial)).sort((x, y) => x - y));
		eq(await serials(), all.map((c) => c.serial).sort((x, y) => x - y), 'serials');
		eq(await page.locator('[data-cert-state=valid]').count(), all.length, 'all valid');
		assert((await text(page, '[data-k=certs-count]')).startsWith(`${all.length} certificates: ${all.length} valid`), 'count line');
		await page.locator('details.bundle summary').click();
		await shot(page, '15-certificates.png');

		// Filters: by instance uid (the API's filter), by name (the page's), expiring soon.
		const pay = byInst('payments-5d2a-1');
		const paySerials = (await certsOf(pay)).map((c) => c.serial);
		const waitRows = (want, what) => waitFor(async () => JSON.stringify(await serials()) === JSON.stringify(want), what);
		await page.fill('input[name=agent]', pay.uidHex);
		await page.press('input[name=agent]', 'Enter');
		await waitRows(paySerials, 'filtered by uid');
		const front = byInst('frontend-b81e-1');
		await page.fill('input[name=agent]', 'frontend');
		await page.press('input[name=agent]', 'Enter');
		await waitRows((await certsOf(front)).map((c) => c.serial), 'filtered by name');
		await page.fill('input[name=agent]', '');
		await page.press('input[name=agent]', 'Enter');
		await page.check('input[name=expiring]');
		const soon = (await api('GET', `/api/v1/certificates?expiring_within=${Math.floor(ca.certificate_lifetime_s / 3)}`)).json.certificates;
		await waitRows(soon.map((c) => c.serial), 'expiring soon');
		await page.uncheck('input[name=expiring]');
		await waitRows(all.map((c) => c.serial).sort((x, y) => x - y), 'filters cleared');

		// Revoke one through the UI, with a reason.
		const victim = paySerials[0];
		await page.click(`[data-revoke="${victim}"]`);
		await page.selectOption('select[name=revoke-reason]', 'keyCompromise');
		await page.click('[data-k=confirm-revoke]');
		await page.locator('[data-k=revoke-ok]').waitFor({timeout: TIMEOUT});
		const revoked = (await api('GET', `/api/v1/certificates/${victim}`)).json;
		assert(revoked.revoked === true && revoked.revoke_reason === 'keyCompromise', `revoked: ${JSON.stringify(revoked)}`);
		await page.locator(`tr[data-serial="${victim}"] [data-cert-state=revoked]`).waitFor({timeout: TIMEOUT});

		// Rotation: refused without a selector (nothing sent), then by selector.
		const before = (await api('GET', '/api/v1/rotations')).json.rotations.length;
		await page.click('form.rotate button[type=submit]');
		assert((await text(page, 'form.rotate .alert-error')).includes('every agent'), 'empty selector refused');
		eq((await api('GET', '/api/v1/rotations')).json.rotations.length, before, 'nothing started');
		await page.fill('textarea[name=rotate-selector]', 'service.name=frontend');
		await page.click('form.rotate button[type=submit]');
		const ok = page.locator('[data-k=rotate-ok]');
		await ok.waitFor({timeout: TIMEOUT});
		const id = await ok.getAttribute('data-rotation');
		const rot = (await api('GET', `/api/v1/rotations/${id}`)).json;
		eq(rot.selector, {'service.name': 'frontend'}, 'rotation selector');
		const row = page.locator(`tr[data-rotation="${id}"]`);
		await row.waitFor({timeout: TIMEOUT});
		if (rot.progress) {
			// Progress moves on its own: the page's numbers add up to the matched agents.
			const n = await row.locator('[data-count]').evaluateAll((els) => els.reduce((s, e) => s + Number(e.textContent), 0));
			eq(n, rot.progress.matched, 'progress adds up to the matched agents');
		} else {
			assert((await row.locator('[data-k=rotation-progress]').innerText()).startsWith('—'), 'no progress: a dash');
		}
		await shot(page, '16-certificates-revoked-rotated.png');
	});

	await check('agent page: its certificate', async () => {
		const a = byInst('frontend-b81e-1');
		const newestOf = async () => (await api('GET', `/api/v1/certificates?agent=${a.uidHex}`)).json.certificates
			.reduce((x, y) => (y.serial > x.serial ? y : x));
		/* The rotation started above may issue this agent a newer certificate at any moment:
		 * the page must show the newest one of the moment it was drawn. */
		const before = await newestOf();
		const ag = (await api('GET', `/api/v1/agents/${a.uidHex}`)).json;
		await gotoHash(page, `#/agents/${a.uidHex}`);
		const shown = Number(await text(page, '[data-k=cert-serial]'));
		const after = await newestOf();
		assert(shown >= before.serial && shown <= after.serial,
			`serial: got ${shown}, want ${before.serial}..${after.serial}`);
		const shownCert = shown === after.serial ? after : before;
		if (shown === before.serial || shown === after.serial)
			eq(await page.locator('[data-k=cert-state] [data-cert-state]').getAttribute('data-cert-state'), shownCert.revoked ? 'revoked' : 'valid', 'state');
		const inUse = await text(page, '[data-k=cert-in-use]');
		if (ag.certificate === undefined) eq(inUse, '—', 'in use not reported');
		else assert(inUse.length > 1, 'in use shown');
		await shot(page, '17-agent-certificate.png');
	});

	await check('overview after the changes', async () => {
		await gotoHash(page, '#/');
		const list = (await api('GET', '/api/v1/agents')).json.agents;
		eq(await text(page, '[data-tile=config] [data-count=applied]'), String(list.filter((a) => configState(a) === 'applied').length), 'applied');
		eq(await page.locator('tr[data-config]').count(), 4, 'four configurations');
		const ca = (await api('GET', '/api/v1/ca')).json;
		const soon = (await api('GET', `/api/v1/certificates?expiring_within=${Math.floor(ca.certificate_lifetime_s / 3)}`)).json.certificates;
		eq(await text(page, '[data-k=certs-expiring]'), String(soon.length), 'certificates expiring soon');
		await shot(page, '02-overview.png');
	});

	await check('line diff: minimal edit scripts that turn one text into the other', async () => {
		const r = await page.evaluate(() => {
			const {diffLines, hunks} = window.opampdUi;
			let seed = 12345;
			const rnd = (n) => {
				seed = (seed * 1103515245 + 12345) % 2147483648;
				return seed % n;
			};
			const lcs = (a, b) => {
				const t = Array.from({length: a.length + 1}, () => new Int32Array(b.length + 1));
				for (let i = 1; i <= a.length; i++)
					for (let j = 1; j <= b.length; j++)
						t[i][j] = a[i - 1] === b[j - 1] ? t[i - 1][j - 1] + 1 : Math.max(t[i - 1][j], t[i][j - 1]);
				return t[a.length][b.length];
			};
			const problems = [];
			const verify = (a, b, what) => {
				const s = diffLines(a, b);
				const olds = s.filter((l) => l.op !== '+');
				const news = s.filter((l) => l.op !== '-');
				if (JSON.stringify(olds.map((l) => l.text)) !== JSON.stringify(a)) problems.push(`${what}: old side`);
				if (JSON.stringify(news.map((l) => l.text)) !== JSON.stringify(b)) problems.push(`${what}: new side`);
				if (olds.some((l, i) => l.a !== i + 1) || news.some((l, i) => l.b !== i + 1)) problems.push(`${what}: line numbers`);
				return s;
			};
			for (let c = 0; c < 400; c++) {
				const a = [...Array(rnd(25))].map(() => 'abcde'[rnd(5)]);
				const b = [...Array(rnd(25))].map(() => 'abcde'[rnd(5)]);
				const s = verify(a, b, `case ${c}`);
				const edits = s.filter((l) => l.op !== ' ').length;
				if (edits !== a.length + b.length - 2 * lcs(a, b)) problems.push(`case ${c}: ${edits} edits is not minimal`);
			}
			// A long file with two edits: two hunks with three lines of context.
			const big = [...Array(3000)].map((_, i) => `line ${i}`);
			const changed = big.slice();
			changed[100] = 'changed';
			changed.splice(2500, 0, 'inserted');
			const s = verify(big, changed, 'big');
			const hs = hunks(s);
			if (hs.length !== 2 || hs[0].length !== 8 || hs[1].length !== 7) problems.push(`big: hunks ${hs.map((x) => x.length)}`);
			// Beyond the edit bound the diff gives up instead of using a lot of memory.
			const other = [...Array(2500)].map((_, i) => `other ${i}`);
			if (diffLines(big.slice(0, 2500), other) !== null) problems.push('unbounded edit script');
			return problems;
		});
		eq(r, [], 'problems');
	});

	await check('sign out forgets the token', async () => {
		await page.click('#sign-out');
		await page.locator('form.signin').waitFor({timeout: TIMEOUT});
		eq(await page.evaluate(() => sessionStorage.length), 0, 'sessionStorage empty');
		await page.evaluate(() => {
			location.hash = '#/agents';
		});
		await sleep(200);
		assert(await page.locator('form.signin').isVisible(), 'still the sign-in form');
	});

	await check('the page loads nothing from elsewhere and logs no errors', async () => {
		const foreign = requests.filter((u) => !u.startsWith(node.admin + '/'));
		eq(foreign, [], 'requests to other origins');
		const apiCalls = requests.filter((u) => u.startsWith(node.admin + '/api/'));
		assert(apiCalls.length > 10, 'the UI talks to the API');
		// The expected ones: the refused sign-in (401) and the refused publish (400).
		eq(pageErrors.filter((e) => !/status of (401|400) /.test(e)), [], 'page errors');
	});
	await context.close();

	await readOnlyScenario(tmp, b);
}

// A three-node cluster loses two nodes: the survivor's UI must show it read-only.
async function readOnlyScenario(tmp, b) {
	let nodes = [];
	const extraAgents = [];
	await check('cluster of three: the survivor of a lost majority shows a read-only banner', async () => {
		const ports = await freePorts(6);
		const key = path.join(tmp, 'signing.key');
		await new Promise((resolve, reject) => {
			const p = spawn(BIN, ['keygen', key], {stdio: 'ignore'});
			p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`keygen exit ${code}`))));
		});
		const voters = [1, 2, 3].flatMap((n) => ['--voter',
			`${n}=127.0.0.1:${ports[2 * n - 2]}=http://127.0.0.1:${ports[2 * n - 1]}`]);
		nodes = await Promise.all([1, 2, 3].map((n) => startNode(path.join(tmp, `node${n}`), ['--node-id', String(n),
			'--raft-listen', `127.0.0.1:${ports[2 * n - 2]}`, '--admin-listen', `127.0.0.1:${ports[2 * n - 1]}`,
			'--signing-key', key, ...voters])));
		const leader = await waitFor(async () => {
			const s = await Promise.all(nodes.map((d) => apiFor(d)('GET', '/api/v1/cluster').then((r) => r.json).catch(() => null)));
			const lead = s.find((x) => x && x.role === 'leader' && !x.read_only);
			return lead && s.every((x) => x && x.leader && x.leader.id === lead.node_id) ? lead.node_id : 0;
		}, 'an agreed leader', 20000);
		// The healthy cluster, seen from the leader: every member with its last contact.
		{
			const lead = nodes[leader - 1];
			const c = (await apiFor(lead)('GET', '/api/v1/cluster')).json;
			const context = await b.newContext({viewport: {width: 1440, height: 900}});
			const page = await context.newPage();
			await page.goto(lead.admin + '/#/cluster', {waitUntil: 'domcontentloaded'});
			await page.fill('input[name=token]', lead.token);
			await page.click('form.signin button[type=submit]');
			await waitLoaded(page, '#/cluster');
			eq(await page.locator('tr[data-member]').count(), 3, 'three members');
			eq(await text(page, '[data-k=role]'), 'leader', 'role');
			eq(await text(page, '[data-k=leader-id]'), String(leader), 'leader id');
			for (const m of c.members.filter((x) => x.id !== leader)) {
				assert(m.last_contact_ms !== null, `the API knows member ${m.id}'s last contact`);
				assert(/ms ago|s ago/.test(await text(page, `tr[data-member="${m.id}"] td:last-child`)), `member ${m.id} last contact shown`);
			}
			assert(await page.locator('#banner').isHidden(), 'no banner while writable');
			await shot(page, '12-cluster-of-three.png');
			await context.close();
		}
		// Keep a follower, stop the other two (the leader among them). Before that, a
		// committed configuration and an agent on the survivor, which keeps serving it.
		const keep = nodes.find((d, i) => i + 1 !== leader);
		const r = await apiFor(keep)('POST', '/api/v1/configs/edge', {selector: {'service.name': 'edge-proxy'},
			message: 'edge proxy pipeline', files: {'collector.yaml': {content_type: 'text/yaml', body: yaml(128)}}});
		eq(r.status, 201, 'publish through a follower');
		const agent = new Agent({url: keep.opamp, transport: 'http',
			ident: {'service.name': 'edge-proxy', 'service.instance.id': 'edge-proxy-0'},
			nonident: {'host.name': 'ip-10-0-9-90'}});
		extraAgents.push(agent);
		await agent.start();
		await waitFor(async () => {
			const a = (await apiFor(keep)('GET', `/api/v1/agents/${agent.uidHex}`)).json;
			return a && a.remote_config_status.status === 'APPLIED' && a.remote_config_status.config_hash === r.json.config_hash;
		}, 'the agent applied the committed configuration');
		for (const d of nodes) if (d !== keep) await stopNode(d);
		const api = apiFor(keep);
		const st = await waitFor(async () => {
			const r = (await api('GET', '/api/v1/cluster')).json;
			return r.read_only ? r : null;
		}, 'read-only after losing the majority', 20000);
		const context = await b.newContext({viewport: {width: 1440, height: 900}});
		const page = await context.newPage();
		await page.goto(keep.admin + '/', {waitUntil: 'domcontentloaded'});
		await page.fill('input[name=token]', keep.token);
		await page.click('form.signin button[type=submit]');
		await waitLoaded(page, '#/');
		const banner = page.locator('#banner');
		await banner.waitFor({state: 'visible', timeout: TIMEOUT});
		assert((await banner.innerText()).includes('Read-only'), 'banner says read-only');
		eq(await text(page, '[data-k=cluster-state]'), 'read-only', 'overview tile');
		eq(await text(page, 'tr[data-config="edge"] [data-k=targets]'), '1', 'the committed configuration is still listed and served');
		await shot(page, '13-read-only-overview.png');
		await gotoHash(page, '#/cluster');
		assert((await text(page, '#banner')).includes('Read-only'), 'cluster page says read-only');
		eq(await page.locator('[data-k=cluster-banner]').count(), 0, 'said once, by the banner');
		// A follower still names the leader it lost (as the last known one); once it stands
		// for election itself it knows none.
		await waitFor(async () => {
			await reload(page);
			const c = (await api('GET', '/api/v1/cluster')).json;
			if (c.leader) return (await page.locator('tr[data-member] .badge.leader').allInnerTexts()).some((t) => t.includes('last known'));
			return (await page.locator('[data-k=leader-id]').allInnerTexts()).some((t) => t.includes('No leader known'));
		}, 'the leader shown as the last known one, or as none');
		eq(await text(page, '[data-k=node-id]'), String(st.node_id), 'node id');
		eq(await page.locator('tr[data-member]').count(), 3, 'three members');
		await shot(page, '14-read-only-cluster.png');
		// A write through the UI is refused with the node's reason.
		await gotoHash(page, '#/configs/new');
		await page.fill('form.publish [name=config-name]', 'refused');
		await page.fill('form.publish [name=file-body]', 'a: 1\n');
		await page.click('form.publish button[type=submit]');
		const err = page.locator('form.publish .alert-error');
		await err.waitFor({timeout: TIMEOUT});
		assert(/read_only|leader_unreachable/.test(await err.innerText()), `refusal: ${await err.innerText()}`);
		eq((await api('GET', '/api/v1/configs/refused')).status, 404, 'nothing stored');
		await context.close();
	}).finally(() => extraAgents.forEach((a) => a.stop()));
}

main().then(() => {
	console.log(`${passed} passed, ${failed} failed`);
	process.exit(failed ? 1 : 0);
}, (e) => {
	console.log(`not ok - ${(e && e.stack) || e}`);
	console.log(`${passed} passed, ${failed + 1} failed`);
	process.exit(1);
});
