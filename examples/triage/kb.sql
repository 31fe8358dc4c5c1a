-- The triage example's knowledge base, loaded into an in-memory SQLite database each time the
-- system starts (system.toml: [[plugins]] builtin = "database", init_sql_file = "kb.sql").
-- The technical agent looks articles up by keyword and the customer's plan by id.

CREATE TABLE customers (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    plan      TEXT NOT NULL,
    sla_hours INTEGER NOT NULL
);

CREATE TABLE articles (
    id      INTEGER PRIMARY KEY,
    keyword TEXT NOT NULL,   -- lower case; matched against the ticket's subject and body
    title   TEXT NOT NULL,
    url     TEXT NOT NULL
);

INSERT INTO customers (id, name, plan, sla_hours) VALUES
    ('C-1001', 'Acme Corp',      'enterprise', 4),
    ('C-1002', 'Globex',         'pro',        24),
    ('C-1003', 'Initech',        'free',       72),
    ('C-1004', 'Umbrella Labs',  'pro',        24);

INSERT INTO articles (id, keyword, title, url) VALUES
    (101, 'password', 'Resetting a forgotten password',          'https://help.example.com/kb/101'),
    (102, 'login',    'Troubleshooting login failures',          'https://help.example.com/kb/102'),
    (103, 'api',      'API error codes and retries',              'https://help.example.com/kb/103'),
    (104, 'timeout',  'Requests that time out',                   'https://help.example.com/kb/104'),
    (105, 'crash',    'Collecting a crash report',                'https://help.example.com/kb/105'),
    (106, 'sync',     'Sync stuck or out of date',                'https://help.example.com/kb/106'),
    (107, '500',      'Server errors (HTTP 500) on the dashboard', 'https://help.example.com/kb/107');
