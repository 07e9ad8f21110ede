-- wrk script: one new Alertmanager alert per request, the same body shape
-- as `cargo bench --bench intake` (unique fingerprint and startsAt,
-- alertname=BenchAlert, 50 services). A lean load generator, so that the
-- server's ceiling can be measured without the bench client's own CPU.
--
--   wrk -t2 -c16 -d10s -s benches/wrk/alertmanager.lua http://127.0.0.1:8080/hooks/alertmanager
--
-- Each wrk thread numbers its alerts from its own offset, so fingerprints
-- never repeat across threads, nor across runs a second or more apart (a
-- warm-up run followed by the measured one would otherwise re-send the
-- same alerts, and duplicates are answered more cheaply than new ones).
-- Non-200 answers are counted and printed.

local threads = {}
local counter = 1
local run = os.time() % 1000000

function setup(thread)
  thread:set("offset", counter * 100000000000000 + run * 10000000)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  n = 0
  rejected = 0
  day = os.date("!%Y-%m-%d", os.time() - 86400)
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local id = offset + n
  local svc = id % 50
  local fp = string.format("%08x%08x", math.floor(id / 4294967296), id % 4294967296)
  local ms = id % 86400000
  local starts = string.format("%sT%02d:%02d:%02d.%03dZ", day,
    math.floor(ms / 3600000), math.floor(ms / 60000) % 60, math.floor(ms / 1000) % 60, ms % 1000)
  local inst = string.format("10.%d.%d.%d:9100",
    math.floor(id / 65536) % 256, math.floor(id / 256) % 256, id % 256)
  local labels = string.format(
    '{"alertname":"BenchAlert","instance":"%s","job":"node","service":"svc-%d","severity":"warning"}',
    inst, svc)
  local ann = string.format(
    '{"summary":"BenchAlert on svc-%d","description":"Synthetic alert %s on %s from the firstline intake benchmark."}',
    svc, fp, inst)
  local body = string.format(
    '{"version":"4","groupKey":"{}:{alertname=\\"BenchAlert\\", service=\\"svc-%d\\"}","truncatedAlerts":0,"status":"firing","receiver":"firstline","groupLabels":{"alertname":"BenchAlert","service":"svc-%d"},"commonLabels":%s,"commonAnnotations":%s,"externalURL":"http://alertmanager.bench.local:9093","alerts":[{"status":"firing","labels":%s,"annotations":%s,"startsAt":"%s","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.bench.local:9090/graph?g0.expr=up%%7Bjob%%3D%%22node%%22%%7D+%%3D%%3D+0&g0.tab=1","fingerprint":"%s"}]}',
    svc, svc, labels, ann, labels, ann, starts, fp)
  return wrk.format("POST", nil, nil, body)
end

function response(status, headers, body)
  if status ~= 200 then
    rejected = rejected + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("rejected") or 0)
  end
  io.write(string.format("non-200 answers: %d\n", bad))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g latency: %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
