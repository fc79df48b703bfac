-- Shared helpers (each Argo CD health script must stand alone, so they are repeated per kind).
local function condition(obj, type_)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil then
    return c.reason
  end
  return fallback
end

-- The status describes an older spec: the operator has not caught up yet.
local function stale(obj)
  if obj.status == nil then
    return "Waiting for the operator to report status"
  end
  local generation = obj.metadata and obj.metadata.generation
  local observed = obj.status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return "Waiting for the operator to observe generation " .. tostring(generation)
  end
  return nil
end

-- ABExperiment: Invalid → Degraded, a sample ratio mismatch → Degraded (results untrustworthy),
-- Concluded / Inconclusive → Healthy, Running and Ready → Healthy (the split is in force and
-- analysed; it waits for data, not for the operator, like kstatus and kubectl wait say),
-- otherwise (no statistics yet, target missing) → Progressing.
local hs = {}
local waiting = stale(obj)
local phase = obj.status and obj.status.phase
local stalled = condition(obj, "Stalled")
local ready = condition(obj, "Ready")
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = waiting
elseif phase == "Invalid" then
  hs.status = "Degraded"
  hs.message = obj.status.message or text(stalled, "Invalid")
elseif is_true(stalled) then
  hs.status = "Degraded"
  hs.message = text(stalled, "Stalled")
elseif is_true(condition(obj, "SRMDetected")) then
  hs.status = "Degraded"
  hs.message = "Sample ratio mismatch: " .. text(condition(obj, "SRMDetected"), "SRMDetected")
elseif phase == "Concluded" then
  hs.status = "Healthy"
  if obj.status.winner ~= nil then
    hs.message = "Winner: " .. obj.status.winner
  else
    hs.message = obj.status.message or "Concluded"
  end
elseif phase == "Inconclusive" then
  hs.status = "Healthy"
  hs.message = obj.status.message or "Inconclusive: no variant won"
elseif phase == "Running" and is_true(ready) then
  hs.status = "Healthy"
  hs.message = "Running: " .. (obj.status.message or text(ready, "collecting samples"))
else
  hs.status = "Progressing"
  hs.message = obj.status.message or text(condition(obj, "Reconciling"), phase or "Running")
end
return hs
