-- Privacy loss per person who spends it: ε and δ charged per dataset and
-- researcher across all their grants, capped by the dataset's DP budget
-- (each grant's own budget stays a further cap).
CREATE TABLE privacy_ledger (
    dataset_id    TEXT NOT NULL,
    researcher_id TEXT NOT NULL REFERENCES users(id),
    epsilon_used  REAL NOT NULL DEFAULT 0,
    delta_used    REAL NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (dataset_id, researcher_id)
);

-- What DP jobs already charged (every DP job was charged at submission).
INSERT INTO privacy_ledger (dataset_id, researcher_id, epsilon_used, delta_used, updated_at)
SELECT json_extract(d.value, '$.dataset_id'), j.requester_id,
       SUM(json_extract(j.dp_json, '$.epsilon')), SUM(json_extract(j.dp_json, '$.delta')),
       strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
FROM jobs j, json_each(j.datasets_json) d
WHERE j.dp_json IS NOT NULL
GROUP BY 1, 2;
