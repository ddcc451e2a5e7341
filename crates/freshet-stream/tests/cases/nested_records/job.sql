-- Nexmark-shaped events: people, auctions and bids in one stream, each
-- kind in a nested record of its own. Only the nested fields read are
-- kept; names match ignoring case at every level.
WITH bids AS (
    SELECT Bid.Auction AS auction, bid.price AS price
    FROM events TIMESTAMP BY COALESCE(bid.dateTime, auction.dateTime, person.dateTime)
    WHERE type = 'bid'
)
SELECT auction, COUNT(*) AS bids, MAX(price) AS top, System.Timestamp() AS windowEnd
INTO o
FROM bids
GROUP BY auction, TumblingWindow(second, 10)
