// The opampd web UI: a small single-page app over the admin API
// (schemas/admin-api.yaml). Every read and every write is an API call with the
// operator's admin token as a bearer header; nothing else is stored or sent.
// Values from agents and operators are untrusted: they only ever reach the
// page as text nodes (see h()), never as markup.
'use strict';

(() => {
	const TOKEN_KEY = 'opampd.admin-token';
	const REFRESH_MS = 5000;
	const API_TIMEOUT_MS = 15000;
	const HEALTH = ['healthy', 'degraded', 'suspect', 'down'];
	const ROLLOUT = ['applied', 'applying', 'failed', 'pending'];
	const TRANSPORTS = ['websocket', 'http', 'none'];
	const CAPABILITIES = [
		[0x1, 'ReportsStatus'], [0x2, 'AcceptsRemoteConfig'],
		[0x4, 'ReportsEffectiveConfig'], [0x8, 'AcceptsPackages'],
		[0x10, 'ReportsPackageStatuses'], [0x20, 'ReportsOwnTraces'],
		[0x40, 'ReportsOwnMetrics'], [0x80, 'ReportsOwnLogs'],
		[0x100, 'AcceptsOpAMPConnectionSettings'], [0x200, 'AcceptsOtherConnectionSettings'],
		[0x400, 'AcceptsRestartCommand'], [0x800, 'ReportsHealth'],
		[0x1000, 'ReportsRemoteConfig'], [0x2000, 'ReportsHeartbeat'],
		[0x4000, 'ReportsAvailableComponents'], [0x8000, 'ReportsConnectionSettingsStatus'],
	];
	const CONTENT_TYPES = ['text/yaml', 'application/json', 'text/plain'];

	// ---- DOM -------------------------------------------------------------------------

	// h('tag.class1.class2', {attr: value, on: {click: fn}}, child, ...): children are
	// nodes, strings (always inserted as text), arrays, or null/false (skipped).
	function h(spec, props, ...children) {
		const [tag, ...classes] = spec.split('.');
		const el = document.createElement(tag || 'div');
		if (classes.length) el.className = classes.join(' ');
		if (props !== null && props !== undefined &&
		    (typeof props !== 'object' || props instanceof Node || Array.isArray(props))) {
			children.unshift(props);
			props = null;
		}
		let value = null;
		for (const [k, v] of Object.entries(props || {})) {
			if (v === null || v === undefined || v === false) continue;
			if (k === 'on') {
				for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
			} else if (k === 'class') {
				el.className = [el.className, v].filter(Boolean).join(' ');
			} else if (k === 'value') {
				value = v;
			} else if (k === 'style') {
				// Through CSSOM: the Content-Security-Policy refuses style attributes.
				Object.assign(el.style, v);
			} else if (k === 'checked' || k === 'disabled' || k === 'selected') {
				el[k] = !!v;
			} else {
				el.setAttribute(k, v === true ? '' : String(v));
			}
		}
		append(el, children);
		// After the children, so that a <select> finds the option to select.
		if (value !== null) el.value = value;
		return el;
	}

	function append(el, children) {
		for (const c of children) {
			if (c === null || c === undefined || c === false) continue;
			if (Array.isArray(c)) append(el, c);
			else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
		}
	}

	function replace(el, ...children) {
		el.replaceChildren();
		append(el, children);
	}

	const $ = (id) => document.getElementById(id);

	// ---- formatting ------------------------------------------------------------------

	function fmtTime(ms) {
		if (!ms) return '—';
		const d = new Date(ms);
		const p = (n) => String(n).padStart(2, '0');
		return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
			`${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
	}

	function fmtAgo(ms) {
		if (!ms) return 'never';
		const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
		if (s < 5) return 'just now';
		if (s < 60) return `${s} s ago`;
		if (s < 3600) return `${Math.floor(s / 60)} min ago`;
		if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
		return `${Math.floor(s / 86400)} d ago`;
	}

	// A time shown relative, with the exact local time on hover.
	const timeEl = (ms) => h('time', {title: fmtTime(ms), datetime: ms ? new Date(ms).toISOString() : null}, fmtAgo(ms));

	function fmtNanos(ns) {
		return ns ? fmtTime(Math.floor(ns / 1e6)) : '—';
	}

	function fmtDuration(ms) {
		if (ms === null || ms === undefined) return '—';
		if (ms < 1000) return `${ms} ms ago`;
		return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s ago`;
	}

	const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + 's'}`;

	// A hash shown short, the whole of it on hover and when copied.
	function hashEl(hex, len = 12) {
		if (!hex) return h('span.muted', '—');
		return h('code.hash', {title: hex}, hex.length > len ? hex.slice(0, len) + '…' : hex);
	}

	function agentName(a) {
		const id = a.identifying_attributes || {};
		const non = a.non_identifying_attributes || {};
		return id['service.name'] || id['host.name'] || non['host.name'] || a.instance_uid.slice(0, 8);
	}

	// The instance among agents of the same name: service.instance.id, else the uid's start.
	function agentInstance(a) {
		const id = a.identifying_attributes || {};
		const inst = id['service.instance.id'];
		return inst && inst !== agentName(a) ? inst : a.instance_uid.slice(0, 8);
	}

	// Where it runs and what it is: host and version, when reported.
	function agentWhere(a) {
		const id = a.identifying_attributes || {};
		const non = a.non_identifying_attributes || {};
		const host = id['host.name'] || non['host.name'];
		const ver = id['service.version'] || non['service.version'];
		return [host !== agentName(a) ? host : null, ver ? 'v' + ver : null].filter(Boolean).join(' · ');
	}

	// Name and instance, for lists.
	function agentLabel(a, href) {
		return [h('a.agent-name', {href}, agentName(a)), h('span.instance', agentInstance(a))];
	}

	// ---- derived state ---------------------------------------------------------------

	// Where an agent stands with the configuration the server wants it to run:
	// none (no configuration targets it), unsupported (it does not accept remote
	// configuration), applied / applying / failed (its report for the desired hash),
	// or pending (no report for that hash yet).
	function configState(a) {
		const want = a.desired_config;
		if (!want) return {state: 'none', label: 'no configuration'};
		if (!(a.capabilities & 0x2)) return {state: 'unsupported', label: 'not accepted'};
		const rcs = a.remote_config_status || {};
		if (rcs.config_hash === want.config_hash) {
			if (rcs.status === 'APPLIED') return {state: 'applied', label: 'applied'};
			if (rcs.status === 'APPLYING') return {state: 'applying', label: 'applying'};
			if (rcs.status === 'FAILED')
				return {state: 'failed', label: 'failed', message: rcs.error_message || ''};
		}
		return {state: 'pending', label: 'pending'};
	}

	// The rollout of a configuration's active version over the agents it targets.
	function rollout(cfg, agents) {
		const r = {applied: 0, applying: 0, failed: 0, pending: 0, total: 0, failures: []};
		for (const a of agents) {
			if (!a.desired_config || a.desired_config.name !== cfg.name) continue;
			r.total++;
			const rcs = a.remote_config_status || {};
			let st = 'pending';
			if (rcs.config_hash === cfg.config_hash) {
				if (rcs.status === 'APPLIED') st = 'applied';
				else if (rcs.status === 'APPLYING') st = 'applying';
				else if (rcs.status === 'FAILED') st = 'failed';
			}
			r[st]++;
			if (st === 'failed') r.failures.push({agent: a, message: rcs.error_message || ''});
		}
		return r;
	}

	function countBy(items, key, keys) {
		const out = Object.fromEntries(keys.map((k) => [k, 0]));
		for (const it of items) {
			const k = key(it);
			out[k] = (out[k] || 0) + 1;
		}
		return out;
	}

	// ---- API -------------------------------------------------------------------------

	class ApiError extends Error {
		constructor(status, code, message, body) {
			super(message);
			this.status = status;
			this.code = code;
			this.body = body;
		}
	}

	const token = {
		get: () => sessionStorage.getItem(TOKEN_KEY),
		set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
		clear: () => sessionStorage.removeItem(TOKEN_KEY),
	};

	async function api(method, path, body, opts = {}) {
		const headers = {Authorization: `Bearer ${opts.token || token.get() || ''}`};
		if (body !== undefined) headers['Content-Type'] = 'application/json';
		if (opts.idempotencyKey) headers['Idempotency-Key'] = opts.idempotencyKey;
		let res;
		try {
			res = await fetch(path, {
				method,
				headers,
				body: body === undefined ? undefined : JSON.stringify(body),
				cache: 'no-store',
				signal: AbortSignal.timeout(API_TIMEOUT_MS),
			});
		} catch (e) {
			throw new ApiError(0, 'network', `Cannot reach opampd (${e.message}).`);
		}
		let json = null;
		try {
			json = await res.json();
		} catch {
			json = null;
		}
		if (res.status === 401 && !opts.token) {
			signOut('The admin token was refused. Sign in again.');
			throw new ApiError(401, 'unauthorized', 'The admin token was refused.');
		}
		if (!res.ok) {
			const err = (json && json.error) || {};
			throw new ApiError(res.status, err.code || 'http_' + res.status,
				err.message || `HTTP ${res.status}`, json);
		}
		return {status: res.status, json};
	}

	const get = async (path) => (await api('GET', path)).json;
	const enc = encodeURIComponent;

	// Version details never change once written (a version is immutable and signed);
	// only "verified" could, so they are fetched again on each visit to a page.
	const versionCache = new Map();
	async function getVersion(name, v, fresh) {
		const key = `${name}\n${v}`;
		if (fresh || !versionCache.has(key)) {
			const p = get(`/api/v1/configs/${enc(name)}/versions/${v}`);
			versionCache.set(key, p);
			p.catch(() => versionCache.delete(key));
		}
		return versionCache.get(key);
	}

	// ---- shared widgets --------------------------------------------------------------

	const healthBadge = (state) => h('span.badge.h-' + state, {'data-health': state}, state);

	function configBadge(cs) {
		return h('span.badge.c-' + cs.state, {'data-config-state': cs.state, title: cs.message || null},
			cs.label);
	}

	function dot(kind) {
		return h('span.dot.' + kind, {'aria-hidden': 'true'});
	}

	// A bar split by counts: parts is [[key, count, css class, label]], with a legend.
	function stackBar(parts, opts = {}) {
		const total = parts.reduce((s, p) => s + p[1], 0);
		const bar = h('div.stack', {role: 'img', 'aria-label': parts.map((p) => `${p[1]} ${p[3]}`).join(', ')});
		for (const [key, n, cls, label] of parts) {
			if (!n) continue;
			bar.append(h('span.seg.' + cls, {style: {flexGrow: String(n)}, title: `${n} ${label}`, 'data-seg': key}));
		}
		if (!total) bar.append(h('span.seg.empty', {style: {flexGrow: '1'}}));
		if (opts.legend === false) return bar;
		const legend = h('div.legend');
		for (const [key, n, cls, label, href] of parts) {
			const item = [dot(cls), h('b', {'data-count': key}, String(n)), ' ', label];
			legend.append(href && n ? h('a.legend-item', {href}, item) : h('span.legend-item' + (n ? '' : '.zero'), item));
		}
		return h('div.stackbox', bar, legend);
	}

	function rolloutBar(r, opts = {}) {
		return stackBar([
			['applied', r.applied, 'c-applied', 'applied'],
			['applying', r.applying, 'c-applying', 'applying'],
			['failed', r.failed, 'c-failed', 'failed'],
			['pending', r.pending, 'c-pending', 'pending'],
		], opts);
	}

	function selectorEl(sel) {
		const keys = Object.keys(sel || {});
		if (!keys.length) return h('span.muted', 'every agent');
		return h('span.chips', keys.sort().map((k) => h('span.chip', h('span.chip-k', k), '=', sel[k])));
	}

	function attrTable(attrs) {
		const keys = Object.keys(attrs || {}).sort();
		if (!keys.length) return h('p.muted', 'none reported');
		return h('table.kv', h('tbody', keys.map((k) => h('tr', h('th', k), h('td', attrs[k])))));
	}

	function kvList(rows) {
		return h('dl.facts', rows.filter(Boolean).map(([k, v, attrs]) => [h('dt', k), h('dd', attrs || {}, v)]));
	}

	function card(title, ...body) {
		return h('section.card', title ? h('h2', title) : null, ...body);
	}

	function errorBox(e) {
		return h('div.alert.alert-error', {role: 'alert'},
			h('b', e.status ? `${e.message}` : e.message),
			e.code && e.status ? h('span.muted', ` (${e.code}, HTTP ${e.status})`) : null);
	}

	function empty(text) {
		return h('p.empty', text);
	}

	// ---- header: node chip, read-only banner, refresh note -------------------------------

	let lastCluster = null;
	function updateHeader(cluster) {
		lastCluster = cluster;
		const chip = $('node-chip');
		if (!cluster) {
			chip.hidden = true;
			return;
		}
		chip.hidden = false;
		chip.className = 'node-chip ' + (cluster.read_only ? 'ro' : 'rw');
		replace(chip, dot(cluster.read_only ? 'ro' : 'rw'),
			`node ${cluster.node_id} · ${cluster.role} · term ${cluster.term}`);
		chip.title = cluster.read_only ? 'read-only: ' + (cluster.read_only_reason || '') : 'accepts writes';
		const banner = $('banner');
		if (cluster.read_only) {
			banner.hidden = false;
			banner.className = 'banner banner-ro';
			replace(banner, h('b', 'Read-only. '),
				`Node ${cluster.node_id} cannot accept changes now: ${cluster.read_only_reason || 'no writable leader'}. ` +
				'Agents keep the last committed configuration; publishing and rolling back are refused until a majority of the cluster is reachable again.');
		} else {
			banner.hidden = true;
			banner.replaceChildren();
		}
	}

	function showRefreshNote(ok) {
		const n = $('refresh-note');
		n.hidden = false;
		n.className = 'refresh-note' + (ok ? '' : ' stale');
		n.textContent = ok ? `Updated ${fmtTime(Date.now()).slice(11)}` : 'Cannot reach opampd, retrying';
	}

	// ---- pages -----------------------------------------------------------------------
	// A page is {title, mount(main, params) -> refresh()}: mount builds what stays (forms,
	// filters), refresh() fetches and redraws the live parts and is called again every
	// REFRESH_MS while the page is shown.

	async function fetchFleet() {
		const [agents, configs, cluster] = await Promise.all([
			get('/api/v1/agents'), get('/api/v1/configs'), get('/api/v1/cluster'),
		]);
		updateHeader(cluster);
		return {agents: agents.agents, partial: agents.partial, unreachable: agents.unreachable || [],
			configs: configs.configs, cluster};
	}

	// For the overview: the fleet CA and the valid certificates expiring within a third of the
	// configured lifetime (null where the node has no certificate service or it failed).
	async function fetchCertSummary() {
		try {
			const ca = await get('/api/v1/ca');
			const windowS = soonWindowS(ca);
			const soon = await get(`/api/v1/certificates?expiring_within=${windowS}`);
			return {ca, windowS, soon: soon.certificates};
		} catch (e) {
			// The rest of the overview stands without it.
			if (e.status === 401) throw e;
			return null;
		}
	}

	function partialNote(f) {
		if (!f.partial) return null;
		return h('div.alert.alert-warn', {role: 'status'},
			`Agent list is partial: ${plural(f.unreachable.length, 'node')} did not answer ` +
			`(${f.unreachable.join(', ')}). Their agents are missing below.`);
	}

	// Overview ---------------------------------------------------------------------

	function mountOverview(main) {
		const body = h('div');
		main.append(h('div.page-head', h('h1', 'Overview')), body);
		return async () => {
			const [f, cs] = await Promise.all([fetchFleet(), fetchCertSummary()]);
			const health = countBy(f.agents, (a) => a.health.state, HEALTH);
			const transport = countBy(f.agents, (a) => (a.connected ? a.transport : 'none'), TRANSPORTS);
			const cstate = countBy(f.agents, (a) => configState(a).state,
				['applied', 'applying', 'failed', 'pending', 'unsupported', 'none']);
			const connected = f.agents.filter((a) => a.connected).length;
			const c = f.cluster;
			const voters = c.members.filter((m) => m.role === 'voter').length;

			const tiles = h('div.tiles',
				h('section.card.tile', {'data-tile': 'agents'},
					h('h2', 'Agents'),
					h('div.big', {'data-k': 'agents-total'}, String(f.agents.length)),
					h('p.muted', `${connected} connected`),
					stackBar(HEALTH.map((s) => [s, health[s], 'h-' + s, s, `#/agents?health=${s}`]))),
				h('section.card.tile', {'data-tile': 'transport'},
					h('h2', 'Transport'),
					stackBar([
						['websocket', transport.websocket, 't-ws', 'WebSocket', '#/agents?transport=websocket'],
						['http', transport.http, 't-http', 'plain HTTP', '#/agents?transport=http'],
						['none', transport.none, 't-none', 'disconnected', '#/agents?transport=none'],
					])),
				h('section.card.tile', {'data-tile': 'config'},
					h('h2', 'Configuration status'),
					stackBar([
						['applied', cstate.applied, 'c-applied', 'applied', '#/agents?config=applied'],
						['applying', cstate.applying, 'c-applying', 'applying', '#/agents?config=applying'],
						['failed', cstate.failed, 'c-failed', 'failed', '#/agents?config=failed'],
						['pending', cstate.pending, 'c-pending', 'pending', '#/agents?config=pending'],
						['none', cstate.none + cstate.unsupported, 'c-none', 'no configuration', '#/agents?config=none'],
					])),
				h('section.card.tile', {'data-tile': 'cluster'},
					h('h2', 'Cluster'),
					h('div.big.small', {'data-k': 'cluster-state'},
						c.read_only ? h('span.ro-text', 'read-only') : h('span.rw-text', 'writable')),
					kvList([
						['This node', `${c.node_id} (${c.role})`],
						['Leader', c.leader ? `node ${c.leader.id}${c.read_only ? ' (no contact)' : ''}` : 'none known',
							{'data-k': 'cluster-leader'}],
						['Term', String(c.term)],
						['Voters', String(voters)],
					]),
					h('a.more', {href: '#/cluster'}, 'Cluster details →')),
				cs ? h('section.card.tile', {'data-tile': 'certs'},
					h('h2', 'Certificates'),
					h('div.big', {'data-k': 'certs-expiring', class: cs.soon.length ? 'warn-text' : null}, String(cs.soon.length)),
					h('p.muted', `expiring soon: valid, and over within ${Math.round(cs.windowS / 86400)} days`),
					kvList([
						['Fleet CA expires', cs.ca.active ? untilEl(cs.ca.active.not_after_ms) : 'no CA yet', {'data-k': 'ca-until'}],
						['Trust bundle', plural(cs.ca.trust_bundle.length, 'CA')],
					]),
					h('a.more', {href: cs.soon.length ? '#/certs?expiring=1' : '#/certs'}, 'Certificates →')) : null);

			const cfgRows = f.configs.map((cfg) => {
				const r = rollout(cfg, f.agents);
				return h('tr', {'data-config': cfg.name},
					h('td.nowrap', h('a', {href: `#/configs/${enc(cfg.name)}`}, cfg.name)),
					h('td', `v${cfg.active_version}`),
					h('td', selectorEl(cfg.selector)),
					h('td.num', {'data-k': 'targets'}, String(r.total)),
					h('td.rollout-cell', rolloutBar(r, {legend: false}),
						h('span.muted.small', r.total ? `${r.applied} of ${r.total} applied` +
							(r.failed ? `, ${r.failed} failed` : '') : 'no agents')),
					h('td', timeEl(cfg.updated_ms)));
			});
			const configs = card('Configurations',
				f.configs.length ? h('table.grid',
					h('thead', h('tr', h('th', 'Name'), h('th', 'Active'), h('th', 'Selector'),
						h('th.num', 'Agents'), h('th', 'Rollout of the active version'), h('th', 'Updated'))),
					h('tbody', cfgRows))
					: empty('No configurations yet. Publish one from the Configurations page.'));

			// What needs a look: failed configuration, and agents that are not healthy.
			const attention = f.agents.filter((a) => a.health.state !== 'healthy' || configState(a).state === 'failed');
			const attn = card('Needs attention',
				attention.length ? h('ul.attention', attention.slice(0, 10).map((a) => {
					const cs = configState(a);
					const sick = a.health.state !== 'healthy';
					const why = [];
					if (cs.state === 'failed') why.push(h('div.err-text', `configuration ${a.desired_config.name}: ${cs.message || 'failed'}`));
					if (a.health.state === 'down') why.push(h('div.muted', `disconnected, last seen ${fmtAgo(a.last_seen_ms)}`));
					else if (a.health.state === 'suspect') why.push(h('div.muted', 'heartbeats are late'));
					else if (a.health.state === 'degraded') why.push(h('div', degradedReason(a)));
					return h('li', {'data-uid': a.instance_uid},
						h('div.attention-head', sick ? healthBadge(a.health.state) : null,
							cs.state === 'failed' ? configBadge(cs) : null,
							agentLabel(a, `#/agents/${a.instance_uid}`)),
						why);
				}), attention.length > 10 ? h('li', h('a', {href: '#/agents?health=unhealthy'}, `and ${attention.length - 10} more…`)) : null)
					: h('p.all-good', dot('h-healthy'), 'Every agent is healthy and no configuration failed.'));

			replace(body, partialNote(f), tiles, h('div.cols', configs, attn));
		};
	}

	// The first unhealthy component's error, for a one-line reason.
	function degradedReason(a) {
		const walk = (ch, path) => {
			if (!ch) return null;
			for (const [name, sub] of Object.entries(ch.components || {})) {
				const r = walk(sub, path ? `${path}/${name}` : name);
				if (r) return r;
			}
			if (!ch.healthy) return `${path || 'agent'}: ${ch.last_error || ch.status || 'unhealthy'}`;
			return null;
		};
		return walk(a.health.component_health, '') || 'reports unhealthy';
	}

	// Agents -----------------------------------------------------------------------

	function agentMatches(a, f) {
		if (f.health === 'unhealthy' ? a.health.state === 'healthy' : f.health && a.health.state !== f.health) return false;
		if (f.transport && (a.connected ? a.transport : 'none') !== f.transport) return false;
		if (f.config) {
			const st = configState(a).state;
			if (f.config === 'none' ? st !== 'none' && st !== 'unsupported' : st !== f.config) return false;
		}
		const q = (f.q || '').trim();
		if (q) {
			const attrs = {...a.non_identifying_attributes, ...a.identifying_attributes};
			const eq = q.indexOf('=');
			if (eq > 0) {
				const k = q.slice(0, eq).trim();
				const v = q.slice(eq + 1).trim();
				const has = (o) => Object.prototype.hasOwnProperty.call(o, k) && o[k] === v;
				if (!has(a.identifying_attributes) && !has(a.non_identifying_attributes)) return false;
			} else {
				const needle = q.toLowerCase();
				const hay = [a.instance_uid, ...Object.keys(attrs), ...Object.values(attrs),
					a.desired_config ? a.desired_config.name : ''].join('\n').toLowerCase();
				if (!hay.includes(needle)) return false;
			}
		}
		return true;
	}

	function byName(x, y) {
		const kx = `${agentName(x)}\n${agentInstance(x)}`;
		const ky = `${agentName(y)}\n${agentInstance(y)}`;
		return kx < ky ? -1 : kx > ky ? 1 : 0;
	}

	function mountAgents(main, params) {
		const filter = {q: params.get('q') || '', health: params.get('health') || '',
			transport: params.get('transport') || '', config: params.get('config') || ''};
		let agents = null;
		const count = h('span.muted', {'data-k': 'agents-count'});
		const tableBox = h('div');

		const sel = (key, label, opts) => h('label.field', h('span', label),
			h('select', {name: key, value: filter[key], on: {change: (e) => setFilter(key, e.target.value)}},
				opts.map(([v, t]) => h('option', {value: v}, t))));
		const search = h('input', {type: 'search', name: 'q', value: filter.q,
			placeholder: 'name, instance uid, or key=value', 'aria-label': 'Search agents',
			on: {input: (e) => setFilter('q', e.target.value)}});
		const bar = h('div.filters',
			h('label.field.grow', h('span', 'Search'), search),
			sel('health', 'Health', [['', 'any'], ...HEALTH.map((s) => [s, s]), ['unhealthy', 'not healthy']]),
			sel('config', 'Configuration', [['', 'any'], ...ROLLOUT.map((s) => [s, s]), ['none', 'no configuration']]),
			sel('transport', 'Transport', [['', 'any'], ['websocket', 'WebSocket'], ['http', 'plain HTTP'], ['none', 'disconnected']]),
			h('button.btn.btn-quiet', {type: 'button', on: {click: () => {
				for (const k of Object.keys(filter)) filter[k] = '';
				bar.querySelectorAll('select').forEach((s) => { s.value = ''; });
				search.value = '';
				setFilter('q', '');
			}}}, 'Clear'));

		function setFilter(key, value) {
			filter[key] = value;
			const qs = new URLSearchParams(Object.entries(filter).filter(([, v]) => v)).toString();
			history.replaceState(null, '', '#/agents' + (qs ? '?' + qs : ''));
			draw();
		}

		function draw() {
			if (!agents) return;
			const rows = agents.list.filter((a) => agentMatches(a, filter)).sort(byName);
			count.textContent = rows.length === agents.list.length ? plural(rows.length, 'agent')
				: `${rows.length} of ${plural(agents.list.length, 'agent')}`;
			if (!rows.length) {
				replace(tableBox, partialNote(agents), empty(agents.list.length ? 'No agent matches these filters.' : 'No agent has connected yet.'));
				return;
			}
			replace(tableBox, partialNote(agents), h('table.grid.agents',
				h('thead', h('tr', h('th', 'Health'), h('th', 'Agent'), h('th', 'Transport'),
					h('th', 'Configuration'), h('th', 'Config status'), h('th', 'Last seen'))),
				h('tbody', rows.map((a) => {
					const cs = configState(a);
					const href = `#/agents/${a.instance_uid}`;
					return h('tr.link', {'data-uid': a.instance_uid, on: {click: (e) => {
						if (e.target.closest('a')) return;
						location.hash = href;
					}}},
						h('td', healthBadge(a.health.state)),
						h('td', agentLabel(a, href),
							h('div.sub', h('code.uid', {title: a.instance_uid}, a.instance_uid.slice(0, 12) + '…'),
								agentWhere(a) ? ' · ' + agentWhere(a) : '')),
						h('td', a.connected ? (a.transport === 'websocket' ? 'WebSocket' : 'HTTP') : h('span.muted', 'disconnected')),
						h('td', a.desired_config ? [h('a', {href: `#/configs/${enc(a.desired_config.name)}`}, a.desired_config.name),
							h('span.muted', ` v${a.desired_config.version}`)] : h('span.muted', '—')),
						h('td', configBadge(cs), cs.message ? h('div.sub.err-text', cs.message) : null),
						h('td', timeEl(a.last_seen_ms)));
				}))));
		}

		main.append(h('div.page-head', h('h1', 'Agents'), count), card(null, bar, tableBox));
		return async () => {
			const [list, cluster] = await Promise.all([get('/api/v1/agents'), get('/api/v1/cluster')]);
			updateHeader(cluster);
			agents = {list: list.agents, partial: list.partial, unreachable: list.unreachable || []};
			draw();
		};
	}

	// One agent ----------------------------------------------------------------------

	function healthTree(ch, name) {
		const kids = Object.keys(ch.components || {}).sort();
		const head = h('div.ch-row',
			dot(ch.healthy ? 'h-healthy' : 'h-degraded'),
			h('b', name),
			h('span.badge.' + (ch.healthy ? 'h-healthy' : 'h-degraded'), ch.healthy ? 'healthy' : 'unhealthy'),
			ch.status ? h('span.ch-status', ch.status) : null,
			ch.last_error ? h('span.err-text', ch.last_error) : null);
		head.title = [ch.start_time_unix_nano ? `started ${fmtNanos(ch.start_time_unix_nano)}` : '',
			ch.status_time_unix_nano ? `status since ${fmtNanos(ch.status_time_unix_nano)}` : ''].filter(Boolean).join(', ');
		return h('li', {'data-component': name}, head,
			kids.length ? h('ul', kids.map((k) => healthTree(ch.components[k], k))) : null);
	}

	function mountAgent(main, params, uid) {
		const body = h('div');
		main.append(h('nav.crumbs', h('a', {href: '#/agents'}, 'Agents'), ' / ', h('span', {'data-k': 'crumb'}, uid)), body);
		return async () => {
			let a, certs;
			try {
				[a, certs] = await Promise.all([get(`/api/v1/agents/${enc(uid)}`),
					get(`/api/v1/certificates?agent=${enc(uid)}`).then((j) => j.certificates, () => null),
					get('/api/v1/cluster').then(updateHeader)]);
			} catch (e) {
				if (e.status === 404) {
					replace(body, errorBox({message: `No agent ${uid} on this node.`}),
						h('p.muted', 'In a cluster an agent page shows the node the agent talks to; try that node\'s UI.'));
					return;
				}
				throw e;
			}
			main.querySelector('[data-k=crumb]').textContent = agentName(a);
			const cs = configState(a);
			const want = a.desired_config;
			const rcs = a.remote_config_status || {};
			const caps = CAPABILITIES.filter(([bit]) => a.capabilities & bit).map(([, n]) => n);

			const head = h('div.page-head',
				h('h1', agentName(a)), h('span.instance.big-instance', agentInstance(a)), healthBadge(a.health.state),
				h('span.muted', a.connected ? `connected over ${a.transport === 'websocket' ? 'WebSocket' : 'plain HTTP'}` : 'disconnected'),
				h('span.muted', ['last seen ', timeEl(a.last_seen_ms)]));

			let sync;
			if (!want) sync = h('p.muted', 'No configuration targets this agent.');
			else if (cs.state === 'applied') sync = h('p.ok-text', {'data-k': 'sync'}, 'Reported hash matches the desired configuration: applied.');
			else if (cs.state === 'failed') sync = h('p.err-text', {'data-k': 'sync'}, `The agent failed to apply it: ${cs.message || 'no message'}`);
			else if (cs.state === 'applying') sync = h('p', {'data-k': 'sync'}, 'The agent is applying the desired configuration.');
			else if (cs.state === 'unsupported') sync = h('p.muted', {'data-k': 'sync'}, 'The agent does not accept remote configuration.');
			else sync = h('p', {'data-k': 'sync'}, 'Waiting for the agent to report the desired configuration.');

			const config = card('Configuration',
				kvList([
					['Desired', want ? [h('a', {href: `#/configs/${enc(want.name)}`}, want.name), ` v${want.version}`] : h('span.muted', 'none')],
					['Desired hash', hashEl(want && want.config_hash, 64), {'data-k': 'desired-hash'}],
					['Reported status', configBadge(cs)],
					['Reported hash', hashEl(rcs.config_hash, 64), {'data-k': 'reported-hash'}],
					rcs.error_message ? ['Agent message', h('span.err-text', rcs.error_message)] : null,
					['Effective config hash', hashEl(a.effective_config_hash, 64), {'data-k': 'effective-hash'}],
				]), sync);

			const description = card('Description',
				h('h3', 'Identifying attributes'), attrTable(a.identifying_attributes),
				h('h3', 'Non-identifying attributes'), attrTable(a.non_identifying_attributes));

			const ch = a.health.component_health;
			const healthCard = card('Component health',
				ch ? h('ul.tree', {'data-k': 'health-tree'}, healthTree(ch, 'agent'))
					: h('p.muted', 'The agent has not reported its health.'),
				h('p.muted.small', `Server view: ${a.health.state} (phi ${Number(a.health.phi || 0).toFixed(2)}).`));

			const details = card('Details', kvList([
				['Instance uid', h('code', a.instance_uid)],
				['Last seen', [timeEl(a.last_seen_ms), h('span.muted', ` (${fmtTime(a.last_seen_ms)})`)]],
				['Sequence number', String(a.sequence_num)],
				['Capabilities', caps.length ? h('span.chips', caps.map((c) => h('span.chip', c))) : h('span.muted', 'none')],
				a.custom_capabilities && a.custom_capabilities.length
					? ['Custom capabilities', h('span.chips', a.custom_capabilities.map((c) => h('span.chip', c)))] : null,
			]));
			replace(body, head, h('div.cols', h('div', config, healthCard), h('div', description, agentCertCard(a, certs), details)));
		};
	}

	// The agent's certificate: the newest one issued to it, and whether it connects with it
	// (the agent's "certificate" from the API; "—" where this node does not report it).
	function agentCertCard(a, certs) {
		const cur = a.certificate;
		const c = certs && certs.length ? certs.reduce((x, y) => (y.serial > x.serial ? y : x)) : null;
		let inUse = h('span.muted', '—');
		if (cur === null || (cur && cur.serial === undefined)) inUse = 'no certificate on record';
		else if (cur) inUse = cur.in_use ? `yes, serial ${cur.serial}` : `no: it does not present serial ${cur.serial} on its connection`;
		const note = a.capabilities & 0x100 ? null
			: h('p.muted.small', 'This agent does not accept connection settings: opampd cannot give it a certificate.');
		if (!c && !(cur && cur.serial !== undefined)) {
			return card('Certificate', h('p.muted', {'data-k': 'cert-none'}, certs === null
				? 'This node has no certificate service.' : 'No certificate has been issued to this agent.'), note);
		}
		return card('Certificate', kvList([
			c ? ['Serial', h('a', {href: `#/certs?agent=${a.instance_uid}`}, String(c.serial)), {'data-k': 'cert-serial'}] : null,
			c ? ['State', certBadge(certState(c)), {'data-k': 'cert-state'}] : null,
			c ? ['Expires', [untilEl(c.not_after_ms), h('span.muted', ` (${fmtTime(c.not_after_ms)})`)], {'data-k': 'cert-expires'}] : null,
			c ? ['Fingerprint', hashEl(c.fingerprint, 16)] : null,
			c ? ['Issued', [timeEl(c.issued_ms), h('span.muted', ` · ${c.reason}`)]] : null,
			['In use', inUse, {'data-k': 'cert-in-use'}],
			cur && cur.offer ? ['Offer', `${cur.offer.state}${cur.offer.rotation_id ? ` (rotation ${cur.offer.rotation_id})` : ''}`,
				{'data-k': 'cert-offer'}] : null,
		]), certs && certs.length > 1 ? h('p.muted.small', `${plural(certs.length - 1, 'earlier certificate')}: see the Certificates page.`) : null,
		note);
	}

	// Configurations -----------------------------------------------------------------

	function mountConfigs(main) {
		const body = h('div');
		main.append(h('div.page-head', h('h1', 'Configurations'),
			h('a.btn.btn-primary', {href: '#/configs/new'}, 'New configuration')), body);
		return async () => {
			const f = await fetchFleet();
			if (!f.configs.length) {
				replace(body, card(null, empty('No configurations yet.'),
					h('p', h('a', {href: '#/configs/new'}, 'Publish the first one'), ': it reaches every agent its selector matches.')));
				return;
			}
			replace(body, partialNote(f), card(null, h('table.grid',
				h('thead', h('tr', h('th', 'Name'), h('th', 'Active'), h('th', 'Latest'), h('th', 'Selector'),
					h('th.num', 'Priority'), h('th.num', 'Agents'), h('th', 'Rollout'), h('th', 'Hash'), h('th', 'Updated'))),
				h('tbody', f.configs.map((cfg) => {
					const r = rollout(cfg, f.agents);
					return h('tr', {'data-config': cfg.name},
						h('td', h('a', {href: `#/configs/${enc(cfg.name)}`}, cfg.name)),
						h('td', `v${cfg.active_version}`),
						h('td', cfg.latest_version !== cfg.active_version ? h('span.warn-text', {title: 'a newer version exists but is not active'}, `v${cfg.latest_version}`) : `v${cfg.latest_version}`),
						h('td', selectorEl(cfg.selector)),
						h('td.num', String(cfg.priority)),
						h('td.num', {'data-k': 'targets'}, String(r.total)),
						h('td.rollout-cell', rolloutBar(r, {legend: false}),
							h('span.muted.small', r.total ? `${r.applied}/${r.total} applied` + (r.failed ? `, ${r.failed} failed` : '') : '—')),
						h('td', hashEl(cfg.config_hash)),
						h('td', timeEl(cfg.updated_ms)));
				})))));
		};
	}

	// ---- line diff (Myers, O((N+M)·D)) ---------------------------------------------------

	const MAX_EDIT = 2000; // the backtracking trace takes about MAX_EDIT² integers

	// The edit script from a to b (arrays of lines) as [{op: ' '|'-'|'+', text, a, b}]
	// with 1-based line numbers, or null when more than MAX_EDIT lines differ.
	function diffLines(a, b) {
		let pre = 0;
		while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
		let suf = 0;
		while (suf < a.length - pre && suf < b.length - pre &&
		       a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
		const A = a.slice(pre, a.length - suf);
		const B = b.slice(pre, b.length - suf);
		const n = A.length;
		const m = B.length;
		const mid = [];
		if (n === 0 || m === 0) {
			for (let i = 0; i < n; i++) mid.push(['-', i, -1]);
			for (let j = 0; j < m; j++) mid.push(['+', -1, j]);
		} else {
			const max = Math.min(n + m, MAX_EDIT);
			const off = max + 1;
			const v = new Int32Array(2 * max + 3);
			const trace = [];
			let found = -1;
			for (let d = 0; d <= max && found < 0; d++) {
				trace.push(v.slice(off - d - 1, off + d + 2));
				for (let k = -d; k <= d; k += 2) {
					let x = (k === -d || (k !== d && v[off + k - 1] < v[off + k + 1]))
						? v[off + k + 1] : v[off + k - 1] + 1;
					let y = x - k;
					while (x < n && y < m && A[x] === B[y]) {
						x++;
						y++;
					}
					v[off + k] = x;
					if (x >= n && y >= m) {
						found = d;
						break;
					}
				}
			}
			if (found < 0) return null;
			let x = n;
			let y = m;
			const rev = [];
			for (let d = found; d >= 0; d--) {
				const t = trace[d]; // v before step d, indices -d-1..d+1
				const at = (k) => t[k + d + 1];
				const k = x - y;
				const pk = (k === -d || (k !== d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1;
				const px = at(pk);
				const py = px - pk;
				while (x > px && y > py) {
					rev.push([' ', x - 1, y - 1]);
					x--;
					y--;
				}
				if (d > 0) {
					if (x === px) rev.push(['+', -1, y - 1]);
					else rev.push(['-', x - 1, -1]);
				}
				x = px;
				y = py;
			}
			mid.push(...rev.reverse());
		}
		const out = [];
		for (let i = 0; i < pre; i++) out.push({op: ' ', text: a[i], a: i + 1, b: i + 1});
		for (const [op, i, j] of mid) {
			out.push({op, text: op === '+' ? B[j] : A[i], a: i >= 0 ? pre + i + 1 : null, b: j >= 0 ? pre + j + 1 : null});
		}
		for (let i = 0; i < suf; i++) {
			out.push({op: ' ', text: a[a.length - suf + i], a: a.length - suf + i + 1, b: b.length - suf + i + 1});
		}
		return out;
	}

	// Group an edit script into hunks with `ctx` lines of context around changes.
	function hunks(script, ctx = 3) {
		const changed = script.map((l) => l.op !== ' ');
		const out = [];
		let cur = null;
		for (let i = 0; i < script.length; i++) {
			let near = false;
			for (let j = Math.max(0, i - ctx); j <= Math.min(script.length - 1, i + ctx) && !near; j++) near = changed[j];
			if (!near) {
				cur = null;
				continue;
			}
			if (!cur) {
				cur = [];
				out.push(cur);
			}
			cur.push(script[i]);
		}
		return out;
	}

	// "@@ -start,count +start,count @@" as in a unified diff (start is the line before
	// the hunk when it has no line on that side).
	function hunkHeader(hk) {
		const side = (key, skip) => {
			const lines = hk.filter((l) => l.op !== skip);
			let start = lines.length ? lines[0][key] : 0;
			if (!lines.length) {
				const before = hk.find((l) => l[key] !== null);
				start = before ? before[key] - 1 : 0;
			}
			return `${start},${lines.length}`;
		};
		return `@@ -${side('a', '+')} +${side('b', '-')} @@`;
	}

	function splitLines(s) {
		if (s === '') return [];
		const lines = s.split('\n');
		if (lines[lines.length - 1] === '') lines.pop();
		return lines;
	}

	function fileText(f) {
		if (!f) return null;
		return f.body !== undefined ? f.body : null;
	}

	function diffView(va, vb) {
		const out = h('div.diff', {'data-k': 'diff'});
		const meta = [];
		if (JSON.stringify(sortObj(va.selector)) !== JSON.stringify(sortObj(vb.selector)))
			meta.push(h('li', 'Selector: ', selectorEl(va.selector), ' → ', selectorEl(vb.selector)));
		if (va.priority !== vb.priority) meta.push(h('li', `Priority: ${va.priority} → ${vb.priority}`));
		if (meta.length) out.append(h('ul.diff-meta', meta));
		const names = [...new Set([...Object.keys(va.files || {}), ...Object.keys(vb.files || {})])].sort();
		let same = 0;
		for (const name of names) {
			const fa = va.files[name];
			const fb = vb.files[name];
			let status = 'changed';
			if (!fa) status = 'added';
			else if (!fb) status = 'removed';
			const ta = fileText(fa);
			const tb = fileText(fb);
			if (fa && fb && ta === tb && fa.body_base64 === fb.body_base64 && fa.content_type === fb.content_type) {
				same++;
				continue;
			}
			const head = h('div.diff-file-head', h('b', name), h('span.badge.d-' + status, status),
				fa && fb && fa.content_type !== fb.content_type ? h('span.muted', ` content type ${fa.content_type} → ${fb.content_type}`) : null);
			const box = h('div.diff-file', {'data-file': name}, head);
			if ((fa && ta === null) || (fb && tb === null)) {
				box.append(h('p.muted.pad', 'Binary content differs.'));
			} else {
				const script = diffLines(splitLines(ta || ''), splitLines(tb || ''));
				if (!script) {
					box.append(h('p.muted.pad', `Too many differences to show (over ${MAX_EDIT} lines).`));
				} else {
					const tbody = h('tbody');
					const hs = hunks(script);
					for (const hk of hs) {
						tbody.append(h('tr.hunk', h('td.ln'), h('td.ln'), h('td', hunkHeader(hk))));
						for (const l of hk) {
							const cls = l.op === '+' ? 'add' : l.op === '-' ? 'del' : 'ctx';
							tbody.append(h('tr.' + cls, h('td.ln', l.op !== '+' ? String(l.a) : ''),
								h('td.ln', l.op !== '-' ? String(l.b) : ''),
								h('td.code', h('span.op', l.op), l.text)));
						}
					}
					if (!hs.length) tbody.append(h('tr', h('td', {colspan: 3}, h('span.muted', 'Only the content type changed.'))));
					box.append(h('table.diff-table', tbody));
				}
			}
			out.append(box);
		}
		if (out.childElementCount === 0)
			out.append(h('p.muted', {'data-k': 'diff-same'}, 'The two versions are identical.'));
		else if (same) out.append(h('p.muted.small', `${plural(same, 'other file')} unchanged.`));
		return out;
	}

	function sortObj(o) {
		return Object.fromEntries(Object.entries(o || {}).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
	}

	// ---- publish form ----------------------------------------------------------------

	function newKey() {
		if (crypto.randomUUID) return 'ui-' + crypto.randomUUID();
		const b = crypto.getRandomValues(new Uint8Array(16));
		return 'ui-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
	}

	function parseSelector(text) {
		const sel = {};
		const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
		for (const l of lines) {
			const eq = l.indexOf('=');
			if (eq <= 0) throw new Error(`Selector line "${l}" is not key=value.`);
			const k = l.slice(0, eq).trim();
			if (Object.prototype.hasOwnProperty.call(sel, k)) throw new Error(`Selector key "${k}" appears twice.`);
			sel[k] = l.slice(eq + 1).trim();
		}
		return sel;
	}

	// The form that publishes a new version of `name` (or of a new configuration when name
	// is null), starting from `base` (a version detail, or null). After a 2xx answer it
	// calls onDone(answer, name, sentence saying what happened); errors it shows itself.
	function publishForm(name, base, onDone) {
		const files = h('div.files');
		const addFile = (fname, f) => {
			const binary = f && f.body === undefined && f.body_base64 !== undefined;
			const ct = (f && f.content_type) || 'text/yaml';
			const types = CONTENT_TYPES.includes(ct) ? CONTENT_TYPES : [ct, ...CONTENT_TYPES];
			const row = h('div.file-edit', {'data-file-row': ''},
				h('div.file-head',
					h('label.field', h('span', 'File name'), h('input', {name: 'file-name', value: fname || '', required: true, placeholder: 'collector.yaml', spellcheck: 'false'})),
					h('label.field', h('span', 'Content type'), h('select', {name: 'content-type', value: ct}, types.map((t) => h('option', {value: t}, t)))),
					h('button.btn.btn-quiet', {type: 'button', on: {click: () => row.remove()}}, 'Remove')),
				binary
					? h('p.muted', {'data-base64': f.body_base64}, `Binary file (${Math.floor(f.body_base64.length * 3 / 4)} bytes), kept as it is.`)
					: h('textarea', {name: 'file-body', rows: 14, spellcheck: 'false', value: f ? f.body : ''}));
			files.append(row);
		};
		const entries = base ? Object.entries(base.files || {}).sort(([x], [y]) => (x < y ? -1 : 1)) : [];
		if (entries.length) entries.forEach(([n, f]) => addFile(n, f));
		else addFile('collector.yaml', {content_type: 'text/yaml', body: ''});

		const nameInput = name ? null : h('input', {name: 'config-name', required: true, placeholder: 'checkout', pattern: '[A-Za-z0-9_\\-][A-Za-z0-9._\\-]{0,127}', spellcheck: 'false'});
		const selector = h('textarea', {name: 'selector', rows: 3, spellcheck: 'false', placeholder: 'service.name=checkout',
			value: base ? Object.entries(sortObj(base.selector)).map(([k, v]) => `${k}=${v}`).join('\n') : ''});
		const priority = h('input', {name: 'priority', type: 'number', step: '1', value: base ? String(base.priority) : '0'});
		const message = h('input', {name: 'message', placeholder: 'What changes and why', value: ''});
		const result = h('div.form-result', {'aria-live': 'polite'});
		const submit = h('button.btn.btn-primary', {type: 'submit'}, 'Publish');
		let key = newKey();

		const form = h('form.publish', {novalidate: true, on: {submit: async (e) => {
			e.preventDefault();
			result.replaceChildren();
			let body;
			const target = name || nameInput.value.trim();
			try {
				if (!target) throw new Error('Give the configuration a name.');
				const fileMap = {};
				for (const row of files.querySelectorAll('[data-file-row]')) {
					const fn = row.querySelector('[name=file-name]').value.trim();
					if (!fn) throw new Error('Every file needs a name.');
					if (fileMap[fn]) throw new Error(`File "${fn}" appears twice.`);
					const ct = row.querySelector('[name=content-type]').value;
					const ta = row.querySelector('[name=file-body]');
					const b64 = row.querySelector('[data-base64]');
					fileMap[fn] = ta ? {content_type: ct, body: ta.value} : {content_type: ct, body_base64: b64.dataset.base64};
				}
				if (!Object.keys(fileMap).length) throw new Error('Add at least one file.');
				const prio = Number(priority.value || '0');
				if (!Number.isSafeInteger(prio)) throw new Error('Priority must be a whole number.');
				body = {files: fileMap, selector: parseSelector(selector.value), priority: prio, message: message.value};
			} catch (err) {
				result.append(errorBox({message: err.message}));
				return;
			}
			submit.disabled = true;
			submit.textContent = 'Publishing…';
			try {
				const r = await api('POST', `/api/v1/configs/${enc(target)}`, body, {idempotencyKey: key});
				key = newKey();
				const j = r.json;
				message.value = '';
				// The caller shows the outcome: the form may be rebuilt from the new version.
				onDone(j, target, j.created
					? `Published ${target} v${j.version}. It is active now and is being pushed to the agents it targets.`
					: `Nothing changed: this is identical to the active version v${j.version}.`);
			} catch (err) {
				// A refused request changed nothing; a new attempt gets a fresh key unless
				// the outcome is unknown, where retrying with the same key is the safe way.
				if (!['outcome_unknown', 'leader_unreachable', 'network'].includes(err.code)) key = newKey();
				const j = err.body && err.body.error;
				result.append(errorBox(err));
				if (j && j.file) markFile(files, j.file, j.line, j.column);
			} finally {
				submit.disabled = false;
				submit.textContent = 'Publish';
			}
		}}},
		nameInput ? h('label.field', h('span', 'Name'), nameInput) : null,
		h('div.form-row',
			h('label.field.grow', h('span', 'Message'), message),
			h('label.field', h('span', 'Priority'), priority)),
		h('label.field', h('span', 'Selector (one key=value per line; empty matches every agent)'), selector),
		files,
		h('div.form-actions',
			h('button.btn', {type: 'button', on: {click: () => addFile('', null)}}, 'Add file'),
			submit),
		result);
		return form;
	}

	// Put the caret on the line a validation error names, and show it.
	function markFile(files, fname, line, column) {
		for (const row of files.querySelectorAll('[data-file-row]')) {
			if (row.querySelector('[name=file-name]').value.trim() !== fname) continue;
			const ta = row.querySelector('[name=file-body]');
			row.classList.add('has-error');
			if (!ta || !line) return;
			const lines = ta.value.split('\n');
			let pos = 0;
			for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
			pos += Math.max(0, (column || 1) - 1);
			ta.focus();
			ta.setSelectionRange(pos, pos);
		}
	}

	// ---- one configuration --------------------------------------------------------------

	function mountConfig(main, params, name) {
		const head = h('div');
		const rolloutBox = h('div');
		const versionsBox = h('div');
		const diffBox = h('div');
		const publishBox = h('div');
		const notice = h('div', {'aria-live': 'polite'});
		let cfg = null;
		let diffPair = null; // [from, to] chosen by the operator, kept across refreshes
		let confirming = null; // version whose rollback waits for confirmation
		let formBuiltFor = null;
		const seen = new Set(); // versions whose details were fetched during this visit

		main.append(h('nav.crumbs', h('a', {href: '#/configs'}, 'Configurations'), ' / ', h('span', name)),
			head, notice,
			h('div.cols',
				h('div', card('Rollout of the active version', rolloutBox), card('Versions', versionsBox),
					card('Compare versions', diffBox)),
				h('div', card('Publish a new version', publishBox))));

		async function rollback(v) {
			notice.replaceChildren();
			try {
				const r = await api('POST', `/api/v1/configs/${enc(name)}/rollback`, {version: v}, {idempotencyKey: newKey()});
				notice.append(h('div.alert.alert-ok', {role: 'status', 'data-k': 'rollback-ok'},
					`v${r.json.active_version} of ${name} is active again; agents are receiving it.`));
				confirming = null;
				diffPair = null;
				await refresh();
			} catch (e) {
				notice.append(errorBox(e));
			}
		}

		async function drawDiff(versions) {
			const nums = versions.map((v) => v.version);
			if (nums.length < 2) {
				replace(diffBox, h('p.muted', 'Only one version so far.'));
				return;
			}
			if (!diffPair || !nums.includes(diffPair[0]) || !nums.includes(diffPair[1])) {
				const act = cfg.active_version;
				const older = nums.filter((n) => n < act);
				// What the active version changed from the one before it; for the
				// oldest (after a rollback), how it differs from the newest.
				diffPair = older.length ? [older[0], act] : [nums.find((n) => n !== act), act];
			}
			const pick = (i) => h('select', {name: i ? 'diff-to' : 'diff-from', value: String(diffPair[i]), on: {change: (e) => {
				diffPair[i] = Number(e.target.value);
				drawDiff(versions);
			}}}, nums.map((n) => h('option', {value: String(n)}, `v${n}${n === cfg.active_version ? ' (active)' : ''}`)));
			const out = h('div', h('p.muted', 'Loading…'));
			replace(diffBox, h('div.form-row', h('label.field', h('span', 'From'), pick(0)),
				h('label.field', h('span', 'To'), pick(1))), out);
			try {
				const [va, vb] = await Promise.all([getVersion(name, diffPair[0]), getVersion(name, diffPair[1])]);
				replace(out, diffView(va, vb));
			} catch (e) {
				replace(out, errorBox(e));
			}
		}

		async function refresh() {
			let detail;
			let list;
			try {
				[detail, list] = await Promise.all([get(`/api/v1/configs/${enc(name)}`), get('/api/v1/agents'),
					get('/api/v1/cluster').then(updateHeader)]);
			} catch (e) {
				if (e.status === 404) {
					replace(head, errorBox({message: `There is no configuration named ${name}.`}));
					return;
				}
				throw e;
			}
			cfg = detail;
			const r = rollout(cfg, list.agents);
			replace(head, h('div.page-head', h('h1', name),
				h('span.badge.active', {'data-k': 'active-version'}, `active v${cfg.active_version}`),
				h('span.muted', `latest v${cfg.latest_version} · priority ${cfg.priority} · updated `, timeEl(cfg.updated_ms))),
			h('p.config-meta', 'Selector: ', selectorEl(cfg.selector), h('span.muted', ' · hash '), hashEl(cfg.config_hash, 16)));

			replace(rolloutBox,
				h('p', {'data-k': 'rollout-summary'}, r.total
					? `v${cfg.active_version}: ${r.applied} of ${plural(r.total, 'agent')} applied.`
					: 'No agent is targeted by this configuration.'),
				r.total ? rolloutBar(r) : null,
				r.failures.length ? h('div.failures', h('h3', 'Failed agents'),
					h('ul', {'data-k': 'failures'}, r.failures.map((x) => h('li', {'data-uid': x.agent.instance_uid},
						agentLabel(x.agent, `#/agents/${x.agent.instance_uid}`), ': ',
						h('span.err-text', x.message || 'no message'))))) : null,
				list.partial ? h('p.warn-text.small', 'Partial: some nodes did not answer; their agents are not counted.') : null);

			// Versions with signature status (one detail call per version, newest 50).
			const versions = cfg.versions;
			const shown = versions.slice(0, 50);
			// Fetched afresh once per visit, then from the cache: 50 calls every 5 s would be waste.
			const details = await Promise.all(shown.map((v) => {
				const fresh = !seen.has(v.version);
				seen.add(v.version);
				return getVersion(name, v.version, fresh).catch(() => null);
			}));
			const tbody = h('tbody', shown.map((v, i) => {
				const d = details[i];
				const sig = !d ? h('span.muted', 'unknown')
					: d.verified ? h('span.sig.ok', {title: `key ${d.key_id}, term ${d.term}`}, dot('h-healthy'), 'verified')
					: h('span.sig.bad', {title: d.signature ? 'the signature does not verify: this version is never sent to agents' : 'unsigned'}, dot('h-down'), d.signature ? 'does not verify' : 'unsigned');
				let action;
				if (v.active) action = h('span.badge.active', 'active');
				else if (confirming === v.version) {
					action = h('span.confirm', `Make v${v.version} active${v.version < cfg.active_version ? ' again' : ''}? `,
						h('button.btn.btn-danger', {type: 'button', 'data-k': 'confirm-rollback', on: {click: (e) => {
							e.target.disabled = true;
							rollback(v.version);
						}}}, 'Roll back'), ' ',
						h('button.btn.btn-quiet', {type: 'button', on: {click: () => {
							confirming = null;
							refresh();
						}}}, 'Cancel'));
				} else {
					action = h('button.btn', {type: 'button', 'data-rollback': String(v.version), on: {click: () => {
						confirming = v.version;
						refresh();
					}}}, v.version < cfg.active_version ? `Roll back to v${v.version}` : `Make v${v.version} active`);
				}
				return h('tr', {'data-version': String(v.version), class: v.active ? 'is-active' : null},
					h('td', h('b', `v${v.version}`)),
					h('td', v.message || h('span.muted', 'no message')),
					h('td', v.actor),
					h('td', timeEl(v.created_ms)),
					h('td', {'data-k': 'signature'}, sig),
					h('td', hashEl(v.config_hash, 10)),
					h('td.actions', action));
			}));
			replace(versionsBox, h('table.grid.versions',
				h('thead', h('tr', h('th', 'Version'), h('th', 'Message'), h('th', 'Author'), h('th', 'Published'),
					h('th', 'Signature'), h('th', 'Hash'), h('th'))), tbody),
			versions.length > shown.length ? h('p.muted.small', `${versions.length - shown.length} older versions not shown.`) : null);

			// The publish form starts from the active version, and is rebuilt only when the
			// active version changes (so a refresh never throws away what is being typed).
			if (formBuiltFor !== cfg.active_version) {
				formBuiltFor = cfg.active_version;
				const active = await getVersion(name, cfg.active_version);
				replace(publishBox, h('p.muted.small', `Starts from the active version v${cfg.active_version}. A new version becomes active at once.`),
					publishForm(name, active, (j, target, said) => {
						replace(notice, h('div.alert.alert-ok', {role: 'status', 'data-k': 'publish-ok'}, said));
						diffPair = null;
						refresh();
					}));
			}
			if (!diffBox.contains(document.activeElement)) await drawDiff(versions);
		}
		return refresh;
	}

	function mountNewConfig(main) {
		main.append(h('nav.crumbs', h('a', {href: '#/configs'}, 'Configurations'), ' / ', h('span', 'new')),
			h('div.page-head', h('h1', 'New configuration')),
			card(null, h('p.muted', 'The first version becomes active at once and is pushed to every agent the selector matches.'),
				publishForm(null, null, (j, target) => {
					location.hash = `#/configs/${enc(target)}`;
				})));
		return async () => {
			updateHeader(await get('/api/v1/cluster'));
		};
	}

	// Certificates -----------------------------------------------------------------------

	const DAY_MS = 86400e3;

	// valid, expiring (less than a third of its own lifetime left: past the point where
	// automatic renewal should have replaced it), expired or revoked. The same rule as
	// "opampd certs list" and the opampd_agent_certificates metric.
	function certState(c, now = Date.now()) {
		if (c.revoked) return 'revoked';
		if (c.not_after_ms <= now) return 'expired';
		if (c.not_after_ms > c.not_before_ms &&
		    (c.not_after_ms - now) * 3 < c.not_after_ms - c.not_before_ms) return 'expiring';
		return 'valid';
	}

	const CERT_CLASS = {valid: 'h-healthy', expiring: 'h-degraded', expired: 'h-down', revoked: 'c-none'};
	const certBadge = (st) => h('span.badge.' + CERT_CLASS[st], {'data-cert-state': st},
		st === 'expiring' ? 'expiring soon' : st);

	function fmtUntil(ms) {
		const d = ms - Date.now();
		const a = Math.abs(d);
		const n = a < 3600e3 ? `${Math.round(a / 60e3)} min` : a < 2 * DAY_MS ? `${Math.round(a / 3600e3)} h`
			: `${Math.round(a / DAY_MS)} d`;
		return d >= 0 ? `in ${n}` : `${n} ago`;
	}

	// An absolute time shown relative to now ("in 89 d"), the exact local time on hover.
	const untilEl = (ms) => (ms ? h('time', {title: fmtTime(ms), datetime: new Date(ms).toISOString()}, fmtUntil(ms))
		: h('span.muted', '—'));

	// "Expiring soon": a third of the configured certificate lifetime (30 days by default).
	const soonWindowS = (ca) => Math.floor(((ca && ca.certificate_lifetime_s) || 90 * 86400) / 3);

	const ROTATIONS_SHOWN = 10; // newest rotations on the page, each with its progress

	const REVOKE_REASONS = ['unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged',
		'superseded', 'cessationOfOperation', 'privilegeWithdrawn'];

	const ROTATION_STATES = [
		['acknowledged', 'c-applied', 'acknowledged'],
		['offered', 'c-applying', 'offered'],
		['pending', 'c-pending', 'pending'],
		['failed', 'c-failed', 'failed'],
		['unsupported', 'c-unsupported', 'unsupported'],
	];

	// A rotation's progress bar, or a dash where the node does not report progress.
	function rotationProgress(r) {
		const p = r.progress;
		if (!p) return h('span.muted', {'data-k': 'rotation-progress'}, '— (progress not reported by this node)');
		const done = p.complete !== undefined ? p.complete : !p.pending && !p.offered;
		return h('div', {'data-k': 'rotation-progress', 'data-done': done ? 'yes' : 'no'},
			stackBar(ROTATION_STATES.map(([k, cls, label]) => [k, p[k] || 0, cls, label])),
			h('span.muted.small', p.matched
				? `${p.acknowledged || 0} of ${p.matched} acknowledged${done ? '' : ', in progress'}`
				: 'no agent matches the selector'));
	}

	// Agents a rotation could not give a new certificate, with their messages.
	function rotationStragglers(r) {
		const bad = (r.agents || []).filter((x) => x.state === 'failed' || x.state === 'unsupported');
		if (!bad.length) return null;
		return h('ul.attention', {'data-k': 'rotation-stragglers'}, bad.slice(0, 10).map((x) => h('li', {'data-uid': x.instance_uid},
			h('span.badge.' + (x.state === 'failed' ? 'c-failed' : 'c-unsupported'), x.state), ' ',
			h('a', {href: `#/agents/${x.instance_uid}`}, h('code.uid', x.instance_uid.slice(0, 12) + '…')), ' ',
			h('span' + (x.state === 'failed' ? '.err-text' : '.muted'),
				x.message || (x.state === 'unsupported' ? 'cannot take connection settings' : 'no message')))),
		bad.length > 10 ? h('li.muted', `and ${bad.length - 10} more`) : null);
	}

	async function getText(path) {
		let res;
		try {
			res = await fetch(path, {headers: {Authorization: `Bearer ${token.get() || ''}`}, cache: 'no-store',
				signal: AbortSignal.timeout(API_TIMEOUT_MS)});
		} catch (e) {
			throw new ApiError(0, 'network', `Cannot reach opampd (${e.message}).`);
		}
		if (!res.ok) throw new ApiError(res.status, 'http_' + res.status, `HTTP ${res.status}`);
		return res.text();
	}

	// The fleet CA card: the active CA, every other one, and the trust bundle itself.
	function caCard(ca, bundleEl) {
		const act = ca.active;
		return card('Fleet CA',
			act ? kvList([
				['Active CA', act.subject, {'data-k': 'ca-subject'}],
				['Fingerprint', hashEl(act.fingerprint, 24), {'data-k': 'ca-fingerprint'}],
				['Valid until', [fmtTime(act.not_after_ms), ' (', untilEl(act.not_after_ms), ')']],
				['Signs on this node', act.key_here ? h('span.ok-text', 'yes') : h('span.warn-text', 'no: this node does not hold its key')],
				['Certificate lifetime', `${Math.round(ca.certificate_lifetime_s / 86400)} days`, {'data-k': 'lifetime'}],
				['Last serial', String(ca.last_serial), {'data-k': 'last-serial'}],
			]) : h('p.warn-text', 'No fleet CA is registered yet.'),
			h('h3', `Trust bundle: ${plural(ca.trust_bundle.length, 'CA')}`),
			h('table.grid.compact', {'data-k': 'cas'},
				h('thead', h('tr', h('th', 'Fingerprint'), h('th', 'State'), h('th', 'Subject'), h('th', 'Valid until'), h('th', 'Key here'))),
				h('tbody', ca.cas.map((c) => h('tr', {'data-ca': c.fingerprint},
					h('td', hashEl(c.fingerprint, 16)),
					h('td', h('span.badge.' + (c.state === 'active' ? 'active' : c.state === 'retired' ? 'c-none' : 'c-applying'), c.state)),
					h('td', c.subject),
					h('td', untilEl(c.not_after_ms)),
					h('td', c.key_here ? 'yes' : 'no'))))),
			bundleEl);
	}

	function mountCerts(main, params) {
		const filter = {agent: params.get('agent') || '', expiring: params.get('expiring') === '1'};
		const notice = h('div', {'aria-live': 'polite'});
		const caBox = h('div');
		const certsBox = h('div');
		const rotBox = h('div');
		const count = h('span.muted', {'data-k': 'certs-count'});
		const bundlePre = h('pre.pem', {'data-k': 'bundle'});
		const bundleEl = h('details.bundle', h('summary', 'Show the trust bundle (PEM)'), bundlePre);
		let confirming = null; // serial being revoked
		let reason = 'unspecified';
		let last = null; // {ca, certs, rotations, agents}

		const agentInput = h('input', {type: 'search', name: 'agent', value: filter.agent,
			placeholder: 'instance uid, or part of an agent name', 'aria-label': 'Filter by agent',
			on: {change: (e) => setFilter('agent', e.target.value.trim())}});
		const soonBox = h('input', {type: 'checkbox', name: 'expiring', checked: filter.expiring,
			on: {change: (e) => setFilter('expiring', e.target.checked)}});
		const soonLabel = h('span', 'Expiring soon only');
		const bar = h('div.filters',
			h('label.field.grow', h('span', 'Agent'), agentInput),
			h('label.field.check', soonBox, soonLabel));

		function setFilter(k, v) {
			filter[k] = v;
			const qs = new URLSearchParams();
			if (filter.agent) qs.set('agent', filter.agent);
			if (filter.expiring) qs.set('expiring', '1');
			const s = qs.toString();
			history.replaceState(null, '', '#/certs' + (s ? '?' + s : ''));
			refresh().catch((err) => replace(notice, errorBox(err)));
		}

		const isUid = (s) => /^[0-9a-fA-F]{32}$|^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$/.test(s);

		async function revoke(serial) {
			try {
				await api('POST', `/api/v1/certificates/${serial}/revoke`, {reason}, {idempotencyKey: newKey()});
				replace(notice, h('div.alert.alert-ok', {role: 'status', 'data-k': 'revoke-ok'},
					`Certificate ${serial} is revoked (${reason}). It is in the CRL and refused by mTLS listeners from now on.`));
			} catch (err) {
				replace(notice, errorBox(err));
			}
			confirming = null;
			reason = 'unspecified';
			// A failed redraw is retried by the refresh loop; the outcome is shown above.
			await refresh().catch(() => {});
		}

		function drawCerts(list, agentsById, ca) {
			const needle = filter.agent && !isUid(filter.agent) ? filter.agent.toLowerCase() : '';
			const rows = list.filter((c) => {
				if (!needle) return true;
				const a = agentsById.get(c.instance_uid);
				return c.instance_uid.includes(needle) || (a && agentName(a).toLowerCase().includes(needle));
			});
			const now = Date.now();
			const by = countBy(rows, (c) => certState(c, now), ['valid', 'expiring', 'expired', 'revoked']);
			count.textContent = `${plural(rows.length, 'certificate')}: ${by.valid} valid, ${by.expiring} expiring soon, ` +
				`${by.expired} expired, ${by.revoked} revoked`;
			soonLabel.textContent = `Expiring soon only (within ${Math.round(soonWindowS(ca) / 86400)} days)`;
			if (!rows.length) {
				replace(certsBox, empty(list.length || filter.agent || filter.expiring ? 'No certificate matches these filters.'
					: 'No certificate has been issued yet. Agents get one by sending a CSR, or in a rotation.'));
				return;
			}
			replace(certsBox, h('table.grid.certs',
				h('thead', h('tr', h('th.num', 'Serial'), h('th', 'Agent'), h('th', 'State'), h('th', 'Expires'),
					h('th', 'Issued'), h('th', 'Fingerprint'), h('th', 'In use'), h('th'))),
				h('tbody', rows.map((c) => {
					const a = agentsById.get(c.instance_uid);
					const st = certState(c, now);
					let inUse = h('span.muted', '—');
					if (a && a.certificate && a.certificate.serial !== undefined) {
						if (a.certificate && a.certificate.serial === c.serial) inUse = a.certificate.in_use ? 'yes' : 'not presented';
						else inUse = 'no';
					}
					let action = null;
					if (!c.revoked && confirming === c.serial) {
						action = h('span.confirm', 'Reason ',
							h('select', {name: 'revoke-reason', value: reason, on: {change: (e) => { reason = e.target.value; }}},
								REVOKE_REASONS.map((r) => h('option', {value: r}, r))), ' ',
							h('button.btn.btn-danger', {type: 'button', 'data-k': 'confirm-revoke', on: {click: (e) => {
								e.target.disabled = true;
								revoke(c.serial);
							}}}, 'Revoke'), ' ',
							h('button.btn.btn-quiet', {type: 'button', on: {click: () => {
								confirming = null;
								drawAll();
							}}}, 'Cancel'));
					} else if (!c.revoked) {
						action = h('button.btn', {type: 'button', 'data-revoke': String(c.serial), on: {click: () => {
							confirming = c.serial;
							drawAll();
						}}}, 'Revoke…');
					}
					return h('tr', {'data-serial': String(c.serial)},
						h('td.num', h('b', String(c.serial))),
						h('td', a ? agentLabel(a, `#/agents/${c.instance_uid}`)
							: h('a', {href: `#/agents/${c.instance_uid}`}, h('code.uid', {title: c.instance_uid}, c.instance_uid.slice(0, 12) + '…'))),
						h('td', certBadge(st), c.revoked && c.revoke_reason ? h('div.sub.muted', c.revoke_reason) : null),
						h('td', {'data-k': 'not-after'}, untilEl(c.not_after_ms), h('div.sub.muted', fmtTime(c.not_after_ms))),
						h('td', timeEl(c.issued_ms), h('div.sub.muted', c.reason + (c.rotation_id ? ` (rotation ${c.rotation_id})` : ''))),
						h('td', hashEl(c.fingerprint, 12)),
						h('td', {'data-k': 'in-use'}, inUse),
						h('td.actions', action));
				}))),
			list.length >= 1000 ? h('p.muted.small', 'The first 1000 shown: narrow the filters to see others.') : null);
		}

		function drawRotations(rotations) {
			const list = rotations;
			replace(rotBox, list.length ? h('table.grid.rotations',
				h('thead', h('tr', h('th', 'Rotation'), h('th', 'Selector'), h('th', 'Started'), h('th', 'Progress'))),
				h('tbody', list.map((r) => h('tr', {'data-rotation': r.rotation_id},
					h('td', h('code', r.rotation_id)),
					h('td', selectorEl(r.selector)),
					h('td', timeEl(r.started_ms), h('div.sub.muted', r.actor)),
					h('td.rollout-cell', rotationProgress(r), rotationStragglers(r))))))
				: empty('No rotation yet.'),
			list.length >= ROTATIONS_SHOWN ? h('p.muted.small', `The newest ${ROTATIONS_SHOWN} shown.`) : null);
		}

		function drawAll() {
			if (!last) return;
			replace(caBox, last.ca ? caCard(last.ca, bundleEl) : errorBox({message: 'This node has no certificate service (no fleet CA).'}));
			drawCerts(last.certs, last.agentsById, last.ca);
			drawRotations(last.rotations);
		}

		// Rotate: by selector, or every agent when asked for explicitly.
		const selInput = h('textarea', {name: 'rotate-selector', rows: 2, spellcheck: 'false', placeholder: 'service.name=checkout'});
		const everyBox = h('input', {type: 'checkbox', name: 'rotate-all'});
		const rotResult = h('div.form-result', {'aria-live': 'polite'});
		const rotSubmit = h('button.btn.btn-primary', {type: 'submit'}, 'Start rotation');
		let rotKey = newKey();
		const rotateForm = h('form.rotate', {novalidate: true, on: {submit: async (e) => {
			e.preventDefault();
			rotResult.replaceChildren();
			let selector;
			try {
				selector = parseSelector(selInput.value);
				if (!Object.keys(selector).length && !everyBox.checked)
					throw new Error('Give a selector, or tick "every agent" to rotate the whole fleet.');
				if (Object.keys(selector).length && everyBox.checked)
					throw new Error('A selector and "every agent" exclude each other.');
			} catch (err) {
				rotResult.append(errorBox({message: err.message}));
				return;
			}
			rotSubmit.disabled = true;
			try {
				const r = await api('POST', '/api/v1/rotations', {selector}, {idempotencyKey: rotKey});
				rotKey = newKey();
				selInput.value = '';
				everyBox.checked = false;
				rotResult.append(h('div.alert.alert-ok', {role: 'status', 'data-k': 'rotate-ok', 'data-rotation': r.json.rotation_id},
					`Rotation ${r.json.rotation_id} started: the matching agents are being given new certificates.`));
				await refresh().catch(() => {});
			} catch (err) {
				if (!['outcome_unknown', 'leader_unreachable', 'network'].includes(err.code)) rotKey = newKey();
				rotResult.append(errorBox(err));
			} finally {
				rotSubmit.disabled = false;
			}
		}}},
		h('div.form-row',
			h('label.field.grow', h('span', 'Selector (key=value, one per line: all must match)'), selInput),
			h('label.field.check', everyBox, h('span', 'Every agent'))),
		h('div.form-actions', rotSubmit), rotResult);

		main.append(h('div.page-head', h('h1', 'Certificates'), count), notice, caBox,
			card('Agent certificates', bar, certsBox),
			card('Rotations', h('p.muted.small', 'A rotation gives every matching agent a new certificate from the active CA. ' +
				'An agent is acknowledged once it reconnects with its new certificate; agents that cannot take connection settings are reported as unsupported.'),
			rotateForm, rotBox));

		let bundleText = null;
		async function refresh() {
			let q = '/api/v1/certificates';
			const qs = new URLSearchParams();
			const [ca, cluster, agents] = await Promise.all([
				get('/api/v1/ca').catch((e) => {
					if (e.status === 404) return null;
					throw e;
				}),
				get('/api/v1/cluster'), get('/api/v1/agents')]);
			updateHeader(cluster);
			if (filter.agent && isUid(filter.agent)) qs.set('agent', filter.agent);
			if (filter.expiring) qs.set('expiring_within', String(soonWindowS(ca)));
			if (qs.toString()) q += '?' + qs.toString();
			const [certs, rotations] = ca ? await Promise.all([get(q), get('/api/v1/rotations')])
				: [{certificates: []}, {rotations: []}];
			// Progress, where the list does not carry it: from each of the newest rotations.
			const recent = rotations.rotations.slice(0, ROTATIONS_SHOWN); // newest first
			rotations.rotations = await Promise.all(recent.map((r) => (r.progress ? r
				: get(`/api/v1/rotations/${enc(r.rotation_id)}`).catch(() => r))));
			if (ca && ca.trust_bundle.length) {
				const text = await getText('/api/v1/ca/bundle');
				if (text !== bundleText) {
					bundleText = text;
					bundlePre.textContent = text;
				}
			}
			last = {ca, certs: certs.certificates, rotations: rotations.rotations,
				agentsById: new Map(agents.agents.map((a) => [a.instance_uid, a]))};
			drawAll();
		}
		return refresh;
	}

	// Cluster ----------------------------------------------------------------------------

	// The digest dumps the whole store on the node: computed when asked, not polled with the
	// status. The last one computed stays shown (with its index) across refreshes.
	let lastDigest = null;
	function digestEl() {
		const slot = h('span', {'data-k': 'digest'});
		const show = () => slot.replaceChildren(...(lastDigest
			? [hashEl(lastDigest.store_digest, 12), ` at index ${lastDigest.applied_index} `] : []), ask);
		const ask = h('button.btn.btn-quiet', {type: 'button', on: {click: async () => {
			ask.disabled = true;
			try {
				lastDigest = await get('/api/v1/cluster/digest');
				show();
			} finally {
				ask.disabled = false;
			}
		}}}, 'Compute');
		show();
		return slot;
	}

	function mountCluster(main) {
		const body = h('div');
		main.append(h('div.page-head', h('h1', 'Cluster')), body);
		return async () => {
			const c = await get('/api/v1/cluster');
			updateHeader(c);
			const leaderId = c.leader ? c.leader.id : null;
			// Read-only is said by the banner on every page; here only the writable case.
			const state = c.read_only ? null
				: h('div.alert.alert-ok', {'data-k': 'cluster-banner'}, h('b', 'Writable. '),
					c.role === 'leader' ? 'This node is the leader and a majority is in contact.' : `Writes are forwarded to the leader, node ${leaderId}.`);
			const tiles = h('div.tiles',
				card('This node', kvList([
					['Node id', String(c.node_id), {'data-k': 'node-id'}],
					['Role', c.role, {'data-k': 'role'}],
					['Term', String(c.term), {'data-k': 'term'}],
				])),
				card(c.read_only && c.leader ? 'Last known leader' : 'Leader', c.leader ? kvList([
					['Node id', String(c.leader.id), {'data-k': 'leader-id'}],
					['Raft address', c.leader.raft_address],
					['Admin URL', c.leader.admin_url || h('span.muted', 'unknown')],
				]) : h('p.warn-text', {'data-k': 'leader-id'}, 'No leader known.',
					c.role === 'candidate' ? ' This node is asking the other voters for their votes.' : '')),
				card('Log', kvList([
					['Commit index', String(c.commit_index), {'data-k': 'commit-index'}],
					['Applied index', String(c.applied_index), {'data-k': 'applied-index'}],
					['Last index', String(c.last_index), {'data-k': 'last-index'}],
				])),
				card('Store', kvList([
					['Digest', digestEl()],
					['Unverified versions', c.unverified_versions ? h('span.err-text', String(c.unverified_versions)) : '0',
						{'data-k': 'unverified'}],
				])));
			const members = card('Members', h('table.grid.members',
				h('thead', h('tr', h('th', 'Id'), h('th', 'Role'), h('th', ''), h('th', 'Raft address'),
					h('th', 'Admin URL'), h('th', 'Last contact'))),
				h('tbody', c.members.map((m) => h('tr', {'data-member': String(m.id)},
					h('td', h('b', String(m.id))),
					h('td', {'data-k': 'member-role'}, m.role),
					h('td', m.id === leaderId ? h('span.badge.leader', c.read_only ? 'last known leader' : 'leader') : null,
						m.id === c.node_id ? h('span.badge.self', 'this node') : null),
					h('td', h('code', m.raft_address)),
					h('td', m.admin_url ? h('code', m.admin_url) : h('span.muted', 'unknown')),
					h('td', m.id === c.node_id ? h('span.muted', '—') : fmtDuration(m.last_contact_ms)))))),
			h('p.muted.small', 'Last contact is known on the leader for every member, and on a follower for its leader.'));
			replace(body, state, tiles, members);
		};
	}

	// ---- sign-in -----------------------------------------------------------------------

	function showSignIn(message) {
		stopRefresh();
		$('nav').hidden = true;
		$('sign-out').hidden = true;
		$('node-chip').hidden = true;
		$('refresh-note').hidden = true;
		$('banner').hidden = true;
		const input = h('input', {type: 'password', name: 'token', autocomplete: 'current-password', required: true,
			placeholder: 'admin token', 'aria-label': 'Admin token', spellcheck: 'false'});
		const result = h('div', {'aria-live': 'polite'}, message ? h('div.alert.alert-warn', message) : null);
		const button = h('button.btn.btn-primary', {type: 'submit'}, 'Sign in');
		const form = h('form.signin', {on: {submit: async (e) => {
			e.preventDefault();
			const t = input.value.trim();
			result.replaceChildren();
			if (!t) return;
			button.disabled = true;
			try {
				await api('GET', '/api/v1/cluster', undefined, {token: t});
				token.set(t);
				route();
			} catch (err) {
				result.append(errorBox(err.status === 401 ? {message: 'That token was refused.'} : err));
			} finally {
				button.disabled = false;
			}
		}}},
		h('h1', 'Sign in to opampd'),
		h('p.muted', 'Enter the admin token. It is in ', h('code', '<data-dir>/admin.token'),
			' on the node; it stays in this browser tab only and is sent with each API call.'),
		input, button, result);
		replace($('main'), h('div.signin-wrap', form));
		input.focus();
	}

	function signOut(message) {
		token.clear();
		versionCache.clear();
		showSignIn(message);
	}

	// ---- router and refresh loop ---------------------------------------------------------------

	let timer = null;
	let current = null; // {refresh, gen}
	let generation = 0;

	function stopRefresh() {
		clearTimeout(timer);
		timer = null;
		current = null;
		generation++;
	}

	async function tick(gen) {
		if (!current || gen !== generation) return;
		if (!document.hidden) {
			try {
				await current.refresh();
				if (gen === generation) {
					showRefreshNote(true);
					$('main').querySelector('.page-error')?.remove();
				}
			} catch (e) {
				if (gen !== generation || e.status === 401) return;
				showRefreshNote(false);
				const main = $('main');
				main.querySelector('.page-error')?.remove();
				main.prepend(h('div.page-error', errorBox(e)));
			}
		}
		if (gen === generation) timer = setTimeout(() => tick(gen), REFRESH_MS);
	}

	function route() {
		if (!token.get()) {
			showSignIn();
			return;
		}
		stopRefresh();
		const hash = location.hash.replace(/^#/, '') || '/';
		const [path, qs] = hash.split('?');
		const params = new URLSearchParams(qs || '');
		const parts = path.split('/').filter(Boolean).map((p) => {
			try {
				return decodeURIComponent(p);
			} catch {
				return p;
			}
		});
		const main = $('main');
		main.replaceChildren();
		$('nav').hidden = false;
		$('sign-out').hidden = false;
		if (lastCluster) updateHeader(lastCluster);

		const [section, mount] = pick(parts);
		const refresh = mount(main, params, parts[1]);
		for (const a of document.querySelectorAll('#nav a')) {
			if (a.dataset.route === section) a.setAttribute('aria-current', 'page');
			else a.removeAttribute('aria-current');
		}
		document.title = `${section === 'overview' ? 'Overview' : a11yTitle(section || 'not found')} · opampd`;
		current = {refresh};
		main.dataset.page = section;
		main.dataset.route = location.hash || '#/';
		main.dataset.loaded = '';
		const gen = generation;
		const wrapped = async () => {
			await refresh();
			if (gen === generation) main.dataset.loaded = String(Date.now());
		};
		current.refresh = wrapped;
		tick(gen);
	}

	function a11yTitle(section) {
		return {agents: 'Agents', configs: 'Configurations', certs: 'Certificates', cluster: 'Cluster'}[section] || section;
	}

	// The page for a route: [nav section, mount function].
	function pick(parts) {
		const [top, sub] = parts;
		if (parts.length === 0) return ['overview', mountOverview];
		if (top === 'agents' && parts.length <= 2) return ['agents', sub ? mountAgent : mountAgents];
		if (top === 'configs' && parts.length === 1) return ['configs', mountConfigs];
		if (top === 'configs' && sub === 'new' && parts.length === 2) return ['configs', mountNewConfig];
		if (top === 'configs' && parts.length === 2) return ['configs', mountConfig];
		if (top === 'certs' && parts.length === 1) return ['certs', mountCerts];
		if (top === 'cluster' && parts.length === 1) return ['cluster', mountCluster];
		return ['', mountNotFound];
	}

	function mountNotFound(main) {
		main.append(h('div.page-head', h('h1', 'Not found')),
			h('p', 'No such page. ', h('a', {href: '#/'}, 'Go to the overview.')));
		return async () => updateHeader(await get('/api/v1/cluster'));
	}

	// For the browser test (tests/ui), which checks the line diff on random inputs.
	window.opampdUi = Object.freeze({diffLines, hunks});

	document.addEventListener('DOMContentLoaded', () => {
		$('sign-out').addEventListener('click', () => signOut('Signed out.'));
		window.addEventListener('hashchange', route);
		document.addEventListener('visibilitychange', () => {
			if (!document.hidden && current) {
				clearTimeout(timer);
				tick(generation);
			}
		});
		route();
	});
})();
