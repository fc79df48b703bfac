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

-- Canary: Degraded (aborted) → Degraded, Paused → Suspended, Progressing → Progressing,
-- Healthy → Healthy (the stable revision serves everything).
local hs = {}
local waiting = stale(obj)
local phase = obj.status and obj.status.phase
local stalled = condition(obj, "Stalled")
local ready = condition(obj, "Ready")
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = waiting
elseif is_true(stalled) then
  hs.status = "Degraded"
  hs.message = text(stalled, "Stalled")
elseif phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = obj.status.abortReason or obj.status.message or text(condition(obj, "Aborted"), "Aborted")
elseif phase == "Paused" then
  hs.status = "Suspended"
  hs.message = obj.status.message or text(condition(obj, "Paused"), "Paused")
elseif phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = "Canary weight " .. tostring(obj.status.weight or 0) .. "%"
elseif phase == "Healthy" and is_true(ready) then
  hs.status = "Healthy"
  hs.message = text(ready, "Healthy")
else
  hs.status = "Progressing"
  hs.message = text(condition(obj, "Reconciling"), phase or "Pending")
end
return hs
