-- 3.1 of the seed, made re-runnable and self-contained: every object lives in `core`
-- (the page put the trigger function in `public`, where DROP SCHEMA core would not reach it).
CREATE SCHEMA IF NOT EXISTS core;

CREATE TABLE core.agents (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    type VARCHAR(50) NOT NULL,
    status VARCHAR(50) DEFAULT 'inactive',
    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE core.discoveries (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id UUID REFERENCES core.agents(id),
    type VARCHAR(50) NOT NULL,
    content TEXT NOT NULL,
    confidence DECIMAL(3,2) CHECK (confidence >= 0 AND confidence <= 1),
    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE core.coordination_state (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    swarm_id VARCHAR(255) NOT NULL,
    state JSONB NOT NULL,
    version INTEGER DEFAULT 1,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX idx_agents_type ON core.agents(type);
CREATE INDEX idx_agents_status ON core.agents(status);
CREATE INDEX idx_discoveries_agent_id ON core.discoveries(agent_id);
CREATE INDEX idx_discoveries_type ON core.discoveries(type);
CREATE INDEX idx_discoveries_created_at ON core.discoveries(created_at DESC);
CREATE INDEX idx_coordination_swarm_id ON core.coordination_state(swarm_id);

CREATE OR REPLACE FUNCTION core.update_updated_at()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER update_agents_updated_at
    BEFORE UPDATE ON core.agents
    FOR EACH ROW
    EXECUTE FUNCTION core.update_updated_at();

CREATE TRIGGER update_coordination_updated_at
    BEFORE UPDATE ON core.coordination_state
    FOR EACH ROW
    EXECUTE FUNCTION core.update_updated_at();
