-- Argo CD health check for ramp.dev/Rollout
-- (argocd-cm key resource.customizations.health.ramp.dev_Rollout; see docs/gitops.md).
--
-- ramp reports kstatus conditions (Ready, Reconciling, Stalled), status.observedGeneration,
-- status.phase and status.message. This script maps them onto Argo CD health:
--   spec not yet observed                 Progressing
--   Stalled=True (a spec or cluster fix,
--     or phase Failed: a new commit)      Degraded
--   phase Failed                          Degraded
--   phase Paused or WaitingForWindow      Suspended
--   Ready=True (Idle, Succeeded)          Healthy
--   anything else (a rollout running)     Progressing
-- It uses only Lua's base library: Argo CD does not open the string library by default.
hs = {}

local function condition(status, type)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function text(value, fallback)
  if value ~= nil and value ~= "" then
    return value
  end
  return fallback
end

local status = obj.status
local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end
local observed = 0
if status ~= nil and status.observedGeneration ~= nil then
  observed = status.observedGeneration
end

if status == nil or observed < generation then
  hs.status = "Progressing"
  hs.message = "waiting for ramp to observe the spec"
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled.message, text(status.message, "stalled"))
  return hs
end

if status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = text(status.message, "rollout failed")
  return hs
end

if status.phase == "Paused" or status.phase == "WaitingForWindow" then
  hs.status = "Suspended"
  hs.message = text(status.message, status.phase)
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready.message, text(status.message, "ready"))
  return hs
end

hs.status = "Progressing"
hs.message = text(status.message, text(status.phase, "waiting for ramp"))
return hs
